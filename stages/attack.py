"""DVC stage `attack`: see `catride attack --help`; the logic lives in catride_core."""

from catride_core.commands.attack import attack

if __name__ == "__main__":
    attack()
