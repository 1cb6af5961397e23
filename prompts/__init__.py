"""Versioned prompt templates (``NAME.txt``), installed as the package ``mtrec_prompts``.

Read them with ``agent.prompts.load_prompt(NAME)``; see that module for the file format.
"""
