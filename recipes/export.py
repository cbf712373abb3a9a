"""`python recipes/export.py ...` runs `hfkit export`: hfkit/recipes/export.py."""

from hfkit.recipes.export import main
from hfkit.runtime import run_recipe

if __name__ == "__main__":
    run_recipe(main)
