"""The small clustered movie catalog shared by the retrieval tests (generated, no data files)."""

from __future__ import annotations

from retrieval import IndexItem

# Six clearly separated genres; every text of a genre mixes its own vocabulary only, so the
# nearest neighbours of an item should come from the same genre.
GENRES: dict[str, tuple[list[str], list[str]]] = {
    "Sci-Fi": (
        [
            "Astronauts aboard a starship",
            "A lone space pilot",
            "The crew of an orbital station",
            "Galactic marines",
            "A robot navigator on a spaceship",
            "Colonists on a distant planet",
            "An alien ambassador",
            "A starfighter squadron",
        ],
        [
            "battle alien invaders near a distant galaxy.",
            "travel through a wormhole to another star system.",
            "repair a failing warp drive before the spacecraft drifts into a black hole.",
            "defend a moon colony from an extraterrestrial fleet.",
            "decode a signal from an alien civilization in deep space.",
            "escape a collapsing space station orbiting Jupiter.",
            "pilot a rocket to rescue stranded astronauts on Mars.",
            "fight a galactic empire with laser cannons and starships.",
        ],
    ),
    "Romance": (
        [
            "Two strangers in Paris",
            "A shy florist",
            "A widowed baker",
            "Childhood sweethearts",
            "A bride on her wedding day",
            "A poet and a violinist",
            "Two rival chefs",
            "A lonely bookshop owner",
        ],
        [
            "fall deeply in love during one summer.",
            "rediscover romance after heartbreak and a broken engagement.",
            "exchange love letters and dream of a kiss under the stars.",
            "must choose between true love and a wedding to someone else.",
            "share a passionate romance that blossoms into marriage.",
            "find love again on a romantic candlelit date.",
            "fall for each other in a tender love story.",
            "meet their soulmate and get married by the sea.",
        ],
    ),
    "Horror": (
        [
            "A family in a haunted house",
            "Teenagers at a cursed summer camp",
            "A priest",
            "Villagers",
            "A night nurse in an abandoned asylum",
            "Campers in a dark forest",
            "A grieving mother",
            "Students in a crumbling mansion",
        ],
        [
            "are terrorized by vengeful ghosts and demonic possession.",
            "are stalked by a masked serial killer with a bloody knife.",
            "perform an exorcism on a child possessed by a demon.",
            "are hunted by zombies rising from a graveyard at midnight.",
            "hear screams from a cursed doll that murders at night.",
            "are haunted by a terrifying spirit that feeds on fear.",
            "summon an evil entity during a seance and are slaughtered one by one.",
            "discover a vampire feasting on blood in the cellar.",
        ],
    ),
    "Western": (
        [
            "A cowboy",
            "A frontier sheriff",
            "A gunslinger",
            "Cattle ranchers",
            "A bounty hunter on horseback",
            "A stagecoach driver",
            "Outlaws in Texas",
            "A Wild West marshal",
        ],
        [
            "faces a gang of outlaws in a dusty frontier town saloon.",
            "rides across the desert prairie to hunt down cattle rustlers.",
            "duels a bandit at high noon with revolvers.",
            "defends the ranch from train robbers on horseback.",
            "tracks a wanted outlaw through canyons of the Old West.",
            "drives a cattle herd across the frontier while dodging bandits.",
            "robs a gold train and escapes the posse in the wild west.",
            "brings law and order to a lawless mining town with six-shooters.",
        ],
    ),
    "Children's": (
        [
            "A talking puppy",
            "A brave little bunny",
            "Cartoon kittens",
            "A friendly dragon and a little girl",
            "Toy teddy bears",
            "A clumsy baby elephant",
            "Singing ducklings",
            "A playful cartoon penguin",
        ],
        [
            "learn about friendship on a colorful animated adventure for kids.",
            "go on a silly bedtime adventure full of songs and games.",
            "find their way home in a cute animated cartoon for children.",
            "throw a birthday party with cake and balloons for their little friends.",
            "learn to share toys in a heartwarming animated family film.",
            "play in a magical toyland in a fun cartoon for young children.",
            "help their animal friends at the playground in a kids' cartoon.",
            "sing nursery rhymes while exploring the farm in an animated movie.",
        ],
    ),
    "Documentary": (
        [
            "Scientists",
            "Marine biologists",
            "A wildlife photographer",
            "Historians",
            "Economists",
            "Climate researchers",
            "A journalist",
            "Archaeologists",
        ],
        [
            "document the migration of whales in a nature documentary with real footage.",
            "investigate the causes of the 2008 financial crisis through interviews.",
            "study melting glaciers and climate change in a factual documentary.",
            "examine ancient Egyptian pyramids in an educational documentary film.",
            "interview farmers about the history of agriculture in a true-story documentary.",
            "film endangered gorillas in the rainforest for a wildlife documentary.",
            "report on the real history of the printing press in a documentary series.",
            "record the lives of bees in a documentary about ecosystems.",
        ],
    ),
}

#: The one item a text query must find first.
OCTOPUS_ID = "m900"
OCTOPUS_QUERY = "giant octopus attacks a submarine"


def make_catalog() -> list[IndexItem]:
    """48 clustered items (8 per genre) plus one distinctive item; every 4th item is also a Comedy.

    Returns:
        The catalog; ids are ``m0``..``m47`` and ``m900``.
    """
    items: list[IndexItem] = []
    n = 0
    for genre, (subjects, actions) in GENRES.items():
        for i, subject in enumerate(subjects):
            action = actions[(i * 3) % len(actions)]
            cats = (genre, "Comedy") if n % 4 == 0 else (genre,)
            year = 1950 + (n * 7) % 70
            title = f"{genre} Story {i + 1}"
            items.append(
                IndexItem(
                    item_id=f"m{n}",
                    text=f"{title} ({year}). {subject} {action} Genres: {', '.join(cats)}",
                    title=title,
                    categories=cats,
                    year=year,
                    extra={"popularity": n % 5, "rank": float(n)},
                )
            )
            n += 1
    items.append(
        IndexItem(
            item_id=OCTOPUS_ID,
            text="Deep Terror (1985). A submarine crew battles a giant octopus beneath the "
            "Arctic ice. Genres: Adventure",
            title="Deep Terror",
            categories=("Adventure",),
            year=1985,
        )
    )
    return items
