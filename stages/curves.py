"""DVC stage `curves`: see `catride curves --help`; the logic lives in catride_core."""

from catride_core.commands.curves import curves

if __name__ == "__main__":
    curves()
