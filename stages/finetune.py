"""DVC stage `finetune`: see `catride finetune --help`; the logic lives in catride_core."""

from catride_core.cli import finetune

if __name__ == "__main__":
    finetune()
