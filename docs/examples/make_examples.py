"""Write the example XLSForm and its attachment from the test builders.

Run from the repository root: `.venv/bin/python docs/examples/make_examples.py`.
It writes docs/examples/household_registration.xlsx and docs/examples/villages.csv.
"""

import importlib
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
REPOSITORY = EXAMPLES.parents[1]


def main() -> None:
    sys.path.insert(0, str(REPOSITORY))
    xlsforms = importlib.import_module("tests.support.xlsforms")
    (EXAMPLES / "household_registration.xlsx").write_bytes(xlsforms.household_registration_xlsx())
    (EXAMPLES / xlsforms.VILLAGES_CSV_NAME).write_bytes(xlsforms.villages_csv())
    print(f"wrote {EXAMPLES / 'household_registration.xlsx'}")
    print(f"wrote {EXAMPLES / xlsforms.VILLAGES_CSV_NAME}")


if __name__ == "__main__":
    main()
