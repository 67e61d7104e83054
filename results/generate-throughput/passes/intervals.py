"""Per cell: pipeline / raw as the ratio of medians, a 95% bootstrap interval over the passes, and how many
pipeline passes fell below raw's median.   python results/generate-throughput/passes/intervals.py"""

import json
import random
import statistics
from pathlib import Path


def ratio_interval95(pipeline: list[float], raw: list[float]) -> tuple[float, float]:
    """Each side's passes resampled on their own (2,000 times, seed 0): the 2.5th and 97.5th percentile ratios."""
    rng = random.Random(0)
    ratios = sorted(statistics.median(rng.choices(pipeline, k=len(pipeline)))
                    / statistics.median(rng.choices(raw, k=len(raw))) for _ in range(2000))
    return ratios[49], ratios[1949]


def main() -> None:
    for path in sorted(Path(__file__).parent.glob("*/generate_throughput.json")):
        for row in json.loads(path.read_text())["rows"]:
            pipeline, raw = row["pipeline_tokens_per_s_passes"], row["raw_tokens_per_s_passes"]
            low, high = ratio_interval95(pipeline, raw)
            below = sum(p < statistics.median(raw) for p in pipeline)
            print(f"{path.parent.name:28} {row['mode']:8} {row['throughput_ratio']:.2f} [{low:.2f}, {high:.2f}] "
                  f"{below} of {len(pipeline)} pipeline passes below raw's median")


if __name__ == "__main__":
    main()
