"""DVC stage `robustness`: see `catride robustness --help`; the logic lives in catride_core."""

from catride_core.commands.robustness import robustness

if __name__ == "__main__":
    robustness()
