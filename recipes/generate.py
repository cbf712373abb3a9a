"""`python recipes/generate.py ...` (or `accelerate launch recipes/generate.py ...`) runs `hfkit generate`: hfkit/recipes/generate.py."""

from hfkit.recipes.generate import main
from hfkit.runtime import run_recipe

if __name__ == "__main__":
    run_recipe(main)
