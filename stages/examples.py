"""DVC stage `examples`: see `catride examples --help`; the logic lives in catride_core."""

from catride_core.commands.examples import examples

if __name__ == "__main__":
    examples()
