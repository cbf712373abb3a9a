"""`python recipes/classify.py ...` (or `accelerate launch recipes/classify.py ...`) runs `hfkit classify`: hfkit/recipes/classify.py."""

from hfkit.recipes.classify import main
from hfkit.runtime import run_recipe

if __name__ == "__main__":
    run_recipe(main)
