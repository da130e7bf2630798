"""Build `service/demo/tarn.json` from the Tarn communes and EPCIs CSV files (run once).

    python scripts/build_demo_fixture.py ../shared/data

The service never reads the CSV files at run time: the demo loads the committed JSON.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def main(data_dir: str) -> None:
    folder = Path(data_dir)
    with (folder / "tarn-communes.csv").open(encoding="utf-8") as f:
        communes = [
            {
                "insee": row["insee"],
                "name": row["name"],
                "siren": row["siren"],
                "postcode": row["postcode"],
                "population": int(row["population"]),
            }
            for row in csv.DictReader(f)
        ]
    with (folder / "tarn-epci.csv").open(encoding="utf-8") as f:
        epcis = [
            {
                "siren": row["siren"],
                "name": row["name"],
                "kind": row["kind"].lower(),
                "population": int(row["population"]),
                "members": row["member_insee_codes"].split(),
            }
            for row in csv.DictReader(f)
        ]
    out = Path(__file__).resolve().parent.parent / "service" / "demo" / "tarn.json"
    out.write_text(
        json.dumps({"communes": communes, "epcis": epcis}, ensure_ascii=False, indent=0) + "\n",
        encoding="utf-8",
    )
    print(f"{out}: {len(communes)} communes, {len(epcis)} EPCI")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
