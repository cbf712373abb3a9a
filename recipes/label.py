"""`python recipes/label.py ...` runs `hfkit label`: hfkit/recipes/label.py."""

from hfkit.recipes.label import main
from hfkit.runtime import run_recipe

if __name__ == "__main__":
    run_recipe(main)
