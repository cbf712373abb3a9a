"""`python recipes/incremental.py ...` (or `accelerate launch recipes/incremental.py ...`) runs `hfkit incremental`: hfkit/recipes/incremental.py."""

from hfkit.recipes.incremental import main
from hfkit.runtime import run_recipe

if __name__ == "__main__":
    run_recipe(main)
