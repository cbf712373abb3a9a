"""`python recipes/push.py ...` (or `accelerate launch recipes/push.py ...`) runs `hfkit push`: hfkit/recipes/push.py."""

from hfkit.recipes.push import main
from hfkit.runtime import run_recipe

if __name__ == "__main__":
    run_recipe(main)
