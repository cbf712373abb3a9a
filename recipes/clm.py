"""`python recipes/clm.py ...` (or `accelerate launch recipes/clm.py ...`) runs `hfkit clm`: hfkit/recipes/clm.py."""

from hfkit.recipes.clm import main
from hfkit.runtime import run_recipe

if __name__ == "__main__":
    run_recipe(main)
