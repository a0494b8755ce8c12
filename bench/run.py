"""`make bench`: run every benchmark and write bench/results.json and docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bench import (
    bench_features,
    bench_ingest,
    bench_model,
    bench_monitoring,
    bench_ope,
    bench_policy,
    bench_ranker,
    bench_redis_memory,
    bench_serving,
    bench_simulator,
)
from bench.common import RESULTS

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_doc(results: dict) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`) from `bench/results.json`. Medians of repeated",
        "runs; each row gives its conditions. Simulated data only where it says so.",
        "",
        "| benchmark | figure | conditions |",
        "|---|---|---|",
    ]
    sim = results.get("simulator")
    if sim:
        one, longer = sim["one_day"], sim["long_range"]
        cond = f"{sim['machine']}, {sim['date']}"
        lines += [
            f"| simulator, 1 day | {one['events_per_second_median']:,} events/s "
            f"(runs {one['events_per_second_runs']}), {one['events']:,} events, "
            f"peak RSS {one['peak_rss_mb_median']} MB | {one['users']:,} users, "
            f"{one['items']:,} items; {cond} |",
            f"| simulator, {longer['days']} days | "
            f"{longer['events_per_second_median']:,} events/s, "
            f"{longer['events']:,} events, peak RSS {longer['peak_rss_mb_median']} MB "
            f"(x{sim['memory_growth_ratio']} of 1 day) | same world; {cond} |",
        ]
    ingest = results.get("ingest")
    if ingest:
        cond = (
            f"local[2], driver {ingest['driver_memory']}, {ingest['users']:,} users, "
            f"{ingest['machine']}, {ingest['date']}"
        )
        for title, row in bench_ingest.table_rows(ingest):
            lines.append(
                f"| ingest: {title} | {row['events_per_second_median']:,} events/s "
                f"(runs {row['events_per_second_runs']}), {row['records']:,} records in "
                f"{row['seconds_median']} s, {row['events_per_cpu_second_median']:,} events "
                f"per CPU second, peak RSS {row['peak_rss_mb_max']:,} MB | "
                f"{row['hours']} hours; {cond}; load average {row['load_average_1m_runs']} |"
            )
        for label in ("1M", "10M"):
            row = ingest.get(f"muma_interactions_{label}")
            if row is not None:
                lines.append(
                    f"| ingest with interactions ({label}, as `muma ingest` runs) | "
                    f"{row['seconds_median']} s: {row['ingest_seconds_median']} s ingest + "
                    f"{row['interactions_seconds_median']} s building "
                    f"{row['interactions']:,} interactions of {row['interactions_hours']} "
                    f"hours; {row['events_per_second_median']:,} events/s overall | "
                    f"{row['hours']} hours, {row['repeats']} run(s); {cond}; load average "
                    f"{row['load_average_1m_runs']} |"
                )
        if "time_ratio_10x" in ingest:
            lines.append(
                f"| ingest: 10x events | {ingest['time_ratio_10x']}x the time of 1M "
                f"(target <= {ingest['target_time_ratio_10x']}) | medians above |"
            )
    model = results.get("model")
    if model:
        cond = (
            f"batch {model['batch_size']}, history {model['long_length']}, embedding "
            f"{model['embedding_dim']}, {model['threads']} threads; {model['machine']}, "
            f"{model['date']}; load average {model['load_average_1m']}"
        )
        for name, row in model["models"].items():
            lines.append(
                f"| training: {name} | {row['samples_per_second_median']:,} samples/s "
                f"(runs {row['samples_per_second_runs']}) | {cond} |"
            )
    features = results.get("features")
    if features:
        load = features.get("load_average_1m_before")
        cond = (
            f"{features['users']:,} users, {features['items']:,} items, "
            f"{features['candidates']} candidates, {features['runs']} run(s); "
            f"{features['machine']}, {features['date']}"
            + (f"; load average {load}-{features['load_average_1m_after']}" if load else "")
        )
        names = {
            "naive": "naive get_online_features",
            "fast": "fast reader",
            "floor": "raw Redis floor",
            "redis_py": "redis-py pipeline, undecoded",
        }
        for name, read in features["reads"].items():
            lines.append(
                f"| online read ({names.get(name, name)}), 1 user + {features['candidates']} "
                f"items | p50 {read['p50_ms']} ms, p99 {read['p99_ms']} ms | {cond} |"
            )
        for name, push in features["push"].items():
            lines.append(
                f"| real-time push ({name}) | one event p99 "
                f"{push['single_event']['p99_ms']} ms, freshness p50 "
                f"{push['freshness']['p50_ms']} ms, p99 {push['freshness']['p99_ms']} ms, "
                f"batched {push['batched_events_per_second']:,} events/s | {cond} |"
            )
        bulk = ""
        if "materialize_bulk_rows_per_second" in features:
            bulk = (
                f"; bulk (feature_repo.redis_load) "
                f"{features['materialize_bulk_rows_per_second']:,} rows/s "
                f"({features['materialize_bulk_rows']:,} rows)"
            )
        lines.append(
            f"| Feast materialisation | feast materialize "
            f"{features['materialize_rows_per_second']:,} rows/s "
            f"({features['materialize_rows']:,} rows){bulk} | {cond} |"
        )
        memory_cond = cond
        if "redis_memory_conditions" in features:
            measured = features["redis_memory_conditions"]
            memory_cond = (
                f"{measured['users']:,} users, {measured['items']:,} items, memory only "
                f"(`python -m bench.bench_features --memory-only`); {measured['machine']}, "
                f"{measured['date']}"
            )
        if "redis_bytes_per_user_sequence" in features:
            memory = (
                f"per user: batch-features hash ({', '.join(features['user_batch_views'])}) "
                f"{features['redis_bytes_per_user_batch']:,} B ({features['redis_user_encoding']})"
                f", sequence key {features['redis_bytes_per_user_sequence']:,} B "
                f"({features['redis_sequence_encoding']}), both "
                f"{features['redis_bytes_per_user_total']:,} B; both "
                f"{features['redis_bytes_per_user_total_listpack']:,} B with "
                f"hash-max-listpack-value {features['redis_listpack_value_bytes']}"
            )
            if "redis_bytes_per_user_batch_with_realtime" in features:
                memory += (
                    f"; batch-features hash with a real-time row "
                    f"{features['redis_bytes_per_user_batch_with_realtime']:,} B "
                    f"({features['redis_user_encoding_with_realtime']})"
                )
        else:
            memory = (
                f"{features['redis_bytes_per_user_batch']:,} B per user "
                f"({', '.join(features['user_batch_views'])})"
            )
        lines.append(
            f"| Redis memory | {memory}; {features['redis_bytes_per_item']:,} B per item "
            f"| {memory_cond} |"
        )
    memory = results.get("redis_memory")
    if memory:
        default, listpack = memory["bytes_per_user_default"], memory["bytes_per_user_listpack"]
        parts = []
        if "bytes_per_user_batch_default" in memory:
            batch = memory["bytes_per_user_batch_default"]
            sequence = memory["bytes_per_user_sequence_default"]
            parts.append(
                f"batch-features hash per user on Redis defaults: median {batch['median']:,} B, "
                f"max {batch['max']:,} B, {batch['share_over_2kb']:.1%} over 2 KB; sequence "
                f"key: median {sequence['median']:,} B, mean {sequence['mean']:,} B, p99 "
                f"{sequence['p99']:,} B"
            )
        parts.append(
            f"both keys per user on Redis defaults: median "
            f"{default['median']:,} B, mean {default['mean']:,} B, p99 {default['p99']:,} B, "
            f"{default['share_over_2kb']:.1%} over 2 KB; with hash-max-listpack-value "
            f"{memory['listpack_value_bytes']}: median {listpack['median']:,} B, mean "
            f"{listpack['mean']:,} B, p99 {listpack['p99']:,} B, "
            f"{listpack['share_over_2kb']:.1%} over 2 KB; per item "
            f"{memory['bytes_per_item_default']['median']:,} B"
        )
        lines.append(
            f"| Redis memory, real feature build | {'; '.join(parts)} | "
            f"{default['entities']:,} users of {memory['data_root']} "
            f"({memory['interval'][0]} to {memory['interval'][1]}, "
            f"{memory['rows_materialised']:,} rows); {memory['machine']}, {memory['date']} |"
        )
    monitoring = results.get("monitoring")
    if monitoring:
        lines.append(
            f"| monitoring report, {monitoring['rows_per_window']:,} rows x "
            f"{monitoring['features']} features | {monitoring['seconds']} s, peak RSS "
            f"{monitoring['peak_rss_mb']:,} MB (Evidently on {monitoring['sampled_rows']:,} "
            f"sampled rows) | {monitoring['machine']}, {monitoring['date']}; load average "
            f"{monitoring['load_average_1min']} |"
        )
    serving = results.get("serving")
    if serving:
        cond = (
            f"{serving['users']:,} users, {serving['items']:,} items, "
            f"{serving['clients']} clients, "
            f"{serving['phase_seconds']} s phases; {serving['machine']}, {serving['date']}; "
            f"load average {serving['load_average_1m_after']}"
        )
        for name, phase in serving["phases"].items():
            offered = phase.get("offered_rps")
            offered = f" (offered {offered:.1f} req/s)" if offered else ""
            lines.append(
                f"| serving: {name} | p50 {phase['p50_ms']} ms, p99 {phase['p99_ms']} ms, "
                f"{phase['throughput_rps']} req/s{offered}, {phase['errors']} errors, "
                f"{phase['degraded']} degraded | {cond} |"
            )
        mem = serving["server_memory_mb"]
        lines.append(
            f"| serving: resident memory | {mem['VmRSS']} MB (peak {mem['VmHWM']} MB) | {cond} |"
        )
    ranker = results.get("ranker")
    if ranker:
        for dataset, entry in ranker.get("datasets", {}).items():
            rows = entry.get("rows", {})
            for model, result in entry.get("models", {}).items():
                if result.get("skipped"):
                    continue
                lines.append(
                    f"| ranker {dataset}: {model} | AUC {result.get('auc')}, GAUC "
                    f"{result.get('gauc')}"
                    + (f", ECE {result['ece']}" if result.get("ece") is not None else "")
                    + "; "
                    f"{result.get('samples_per_second_median')} samples/s | "
                    f"{rows.get('train')} train / {rows.get('test')} test rows; "
                    + (
                        f"median of {result['repeats']} seeds; "
                        if result.get("repeats", 1) > 1
                        else ""
                    )
                    + f"{entry.get('date', ranker.get('date'))}, {ranker.get('machine')}; "
                    + (
                        result["run"]  # a model merged in from another run says which
                        if result.get("run")
                        else f"load average {entry.get('load_average_1m_start')}-"
                        f"{entry.get('load_average_1m_end')}"
                    )
                    + " |"
                )
        scale = ranker.get("scale") or {}
        for model, result in scale.get("models", {}).items():
            lines.append(
                f"| ranker training at {result['rows']:,} rows: {model} | "
                f"{result['samples_per_second']:,} samples/s ({result['steps']} steps), peak RSS "
                f"{result['peak_rss_mb']:,} MB | simulated rows tiled; same run; load average "
                f"{result['load_average_1m']} |"
            )
    policy = results.get("policy")
    if policy:
        cond = (
            f"closed loop, {policy['days']} days, {policy['users']:,} users, "
            f"{policy['items']:,} items, {policy['candidates']} candidates, slates of "
            f"{policy['slate_size']}, shock day {policy['shock_day']}, {policy['seeds']} seed(s); "
            f"simulated; {policy['machine']}, {policy['date']}"
        )
        for name, row in policy["policies"].items():
            share = row.get("share_of_oracle_median")
            lines.append(
                f"| policy: {name} | online CTR {row['ctr_median']} (runs {row['ctr_runs']}), "
                f"expected CTR {row['expected_ctr_median']}, "
                f"{'-' if share is None else f'{share:.1%}'} of the oracle, regret "
                f"{row.get('regret_per_impression_median', '-')} per impression | {cond} |"
            )
        if "bandit_vs_greedy_relative_median" in policy:
            lines.append(
                f"| policy: bandit vs greedy | {policy['bandit_vs_greedy_relative_median']:+.1%} "
                f"expected CTR (target +5%) | {cond} |"
            )
    ope = results.get("ope")
    if ope:
        for campaign, entry in ope["campaigns"].items():
            for direction in entry["directions"].values():
                errors = ", ".join(
                    f"{name.upper()} {e['relative_error_median']:.1%}"
                    for name, e in direction["estimators"].items()
                )
                lines.append(
                    f"| OPE on Open Bandit ({campaign}): {direction['target_policy']} from the "
                    f"{direction['logging_policy']} log | relative error {errors} (truth "
                    f"{direction['truth']:.3%}) | {direction['rounds']:,} rounds (real data), "
                    f"median of {ope['seeds']} seeds, {ope['bootstrap']} bootstrap resamples; "
                    f"{ope['machine']}, {ope['date']} |"
                )
    DOC.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 10 minutes")
    parser.add_argument(
        "--only",
        choices=[
            "simulator",
            "ingest",
            "features",
            "model",
            "monitoring",
            "serving",
            "ranker",
            "redis_memory",
            "policy",
            "ope",
        ],
        help="run one benchmark; the others keep their last results",
    )
    args = parser.parse_args()
    if args.only in (None, "simulator"):
        bench_simulator.main(quick=args.quick)
    if args.only in (None, "ingest"):
        bench_ingest.main(quick=args.quick)
    if args.only in (None, "features"):
        bench_features.main(quick=args.quick)
    if args.only in (None, "model"):
        bench_model.main(quick=args.quick, write=True)
    if args.only in (None, "monitoring"):
        bench_monitoring.main(quick=args.quick)
    if args.only in (None, "serving"):
        bench_serving.main(quick=args.quick)
    if args.only in (None, "ranker"):
        try:
            bench_ranker.main(
                ["--save", "--scale-rows", "1000000"] + (["--quick"] if args.quick else [])
            )
        except bench_ranker.BenchError as error:
            print(f"ranker skipped: {error}")
    if args.only in (None, "redis_memory"):
        data_root = os.environ.get("MUMA_DATA_ROOT", "data")
        try:
            bench_redis_memory.main(["--data-root", data_root, "--save"])
        except FileNotFoundError as error:
            print(f"redis_memory skipped: {error}")
    if args.only in (None, "policy"):
        bench_policy.main(quick=args.quick)
    if args.only in (None, "ope"):
        try:
            bench_ope.main(quick=args.quick)
        except FileNotFoundError as error:
            print(f"ope skipped: {error}")
    results = json.loads(RESULTS.read_text())
    write_doc(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
