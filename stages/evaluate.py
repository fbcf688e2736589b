"""DVC stage `evaluate`: see `catride evaluate --help`; the logic lives in catride_core."""

from catride_core.commands.evaluate import evaluate

if __name__ == "__main__":
    evaluate()
