"""`expq ui`: a read-only web dashboard over the experiment store (Starlette, Jinja2, plotly.js).

It reads through the store's query functions and the --where parser, like the CLI, and never
imports torch.
"""
