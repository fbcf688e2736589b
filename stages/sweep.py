"""DVC stage `sweep`: see `catride sweep --help`; the logic lives in catride_core."""

from catride_core.commands.sweep import sweep

if __name__ == "__main__":
    sweep()
