"""`python recipes/distill.py ...` (or `accelerate launch recipes/distill.py ...`) runs `hfkit distill`: hfkit/recipes/distill.py."""

from hfkit.recipes.distill import main
from hfkit.runtime import run_recipe

if __name__ == "__main__":
    run_recipe(main)
