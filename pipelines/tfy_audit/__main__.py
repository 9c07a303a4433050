"""`python -m tfy_audit`: the `tfy-audit` command."""

from tfy_audit._cli.main import entry

if __name__ == "__main__":
    entry()
