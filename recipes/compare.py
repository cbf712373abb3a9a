"""`python recipes/compare.py ...` (or `accelerate launch recipes/compare.py ...`) runs `hfkit compare`: hfkit/recipes/compare.py."""

from hfkit.recipes.compare import main
from hfkit.runtime import run_recipe

if __name__ == "__main__":
    run_recipe(main)
