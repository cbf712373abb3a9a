"""`python recipes/compress.py ...` (or `accelerate launch recipes/compress.py ...`) runs `hfkit compress`: hfkit/recipes/compress.py."""

from hfkit.recipes.compress import main
from hfkit.runtime import run_recipe

if __name__ == "__main__":
    run_recipe(main)
