"""Words the rule parser knows: category synonyms, ordinals, decades and filler words.

The category synonyms are looked up by the catalog's own category names; a catalog whose
categories are not listed here still gets its names (and their plurals) matched.
"""

from __future__ import annotations

import re

#: Words and phrases that name a category, beyond the category names themselves.
GENRE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "Sci-Fi": (
        "sci-fi", "sci fi", "scifi", "science fiction", "science-fiction", "sf",
    ),
    "Children's": (
        "children's", "childrens", "children", "kids", "kid", "kiddie", "for kids",
    ),
    "Comedy": ("comedy", "comedies", "funny", "comedic", "humor", "humour", "hilarious"),
    "Horror": ("horror", "horrors", "scary", "frightening", "spooky", "creepy"),
    "Animation": ("animation", "animated", "cartoon", "cartoons", "anime"),
    "Action": ("action",),
    "Adventure": ("adventure", "adventures"),
    "Thriller": ("thriller", "thrillers", "suspense", "suspenseful"),
    "Drama": ("drama", "dramas", "dramatic"),
    "Crime": ("crime", "gangster", "gangsters", "heist", "heists"),
    "War": ("war", "war movies", "war films"),
    "Romance": ("romance", "romances", "romantic", "romcom", "rom-com", "love story"),
    "Musical": ("musical", "musicals"),
    "Documentary": ("documentary", "documentaries", "docs"),
    "Western": ("western", "westerns", "cowboy", "cowboys"),
    "Fantasy": ("fantasy", "fantasies"),
    "Film-Noir": ("film-noir", "film noir", "noir"),
    "Mystery": ("mystery", "mysteries", "whodunit", "whodunnit", "detective"),
}  # fmt: skip

ORDINAL_WORDS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "last": -1, "top": 1,
}  # fmt: skip
DECADE_WORDS = {
    "twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
    "seventies": 1970, "eighties": 1980, "nineties": 1990,
}  # fmt: skip
STOPWORDS = frozenset(
    re.findall(
        r"\S+",
        """a about after again all also am an and any anything are as at be before between but by
    can could do does don't dont for from get give go good great have hello hey hi how i i'd
    i'm in instead is it just kind let's lets like looking maybe me more movie movies film films
    my need new next no nor not now of ok okay on one ones only onwards or other others please
    pick picks rather recommend recommendation recommendations released see show some something
    sort stuff suggest suggestions than thank thanks that the them then these things this those
    to too want watch watching what which with without would year years yes you your era decade
    decades made else different another few least maybe ideas idea tonight today published
    publish written wrote read reading bought buy item items""",
    )
)  # fmt: skip
