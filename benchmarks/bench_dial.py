"""Does a trained adapter use ρ? Offers on the same validation states across the dial.

For the same validation decision states (those whose target is an OFFER), the adapter's
greedy offer is decoded at each ρ of a grid, one ρ per copy of the batch, in both channels.
Printed per role: the mean predicted offer (normalised price) per ρ, the least-squares slope
of offer on ρ, and whether the means move monotonically. Then the validation loss (target
tokens) of the adapter at the rows' own ρ against the ρ-blind base with no adapter on the same
rows: the margin is what the dial adds.

    python benchmarks/bench_dial.py --run demo/run --data demo/prepared [--states 256]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from janus.agent import JanusAgent
from janus.decoding import constrained_decode
from janus.examples import DecisionStepDataset, ExampleCollator
from janus.hyperlora import rho_context
from janus.prompt import parse_action
from janus.training.losses import target_token_loss

GRID = tuple(round(0.1 * i, 1) for i in range(11))


def mean_offer_by_rho(agent: JanusAgent, dataset, indices, roles) -> dict[str, list[float]]:
    """Mean greedy OFFER price per ρ of the grid, per role, on fixed states."""
    prompts = [dataset[i].prompt_ids.tolist() for i in indices]
    # The prompt text shows the row's own ρ; swap it for each grid value by re-encoding.
    out: dict[str, list[float]] = {"buyer": [], "seller": []}
    tokenizer = agent.tokenizer
    texts = [tokenizer.decode(p, skip_special_tokens=False) for p in prompts]
    for rho in GRID:
        rho_text = f"<RHO> {rho:.2f}"
        swapped = [_swap_rho(t, rho_text) for t in texts]
        ids = [tokenizer(t, add_special_tokens=False).input_ids for t in swapped]
        bos = [tokenizer.bos_token_id] if prompts[0][:1] == [tokenizer.bos_token_id] else []
        ids = [bos + i for i in ids]
        decoded = constrained_decode(
            agent.model,
            agent.constraint,
            ids,
            pad_id=tokenizer.pad_token_id,
            rho_scope=rho_context(agent.model, torch.full((len(ids),), rho)),
        )
        prices = {"buyer": [], "seller": []}
        for role, text in zip(roles, decoded, strict=True):
            action = parse_action(text)
            if action.kind == "OFFER":
                prices[role].append(action.price_norm)
        for role in out:
            out[role].append(float(np.mean(prices[role])) if prices[role] else float("nan"))
    return out


def _swap_rho(text: str, rho_text: str) -> str:
    first, rest = text.split("\n", 1)
    prefix = first[: first.index("<RHO>")]
    return f"{prefix}{rho_text}\n{rest}"


def val_loss(model, dataset, indices, pad_id, use_rho: bool) -> float:
    collate = ExampleCollator(pad_id)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(indices), 64):
            batch = collate([dataset[i] for i in indices[start : start + 64]])
            if use_rho:
                with rho_context(model, batch["rho"]):
                    loss, n = target_token_loss(model, batch)
            else:
                loss, n = target_token_loss(model, batch)
            total += float(loss.sum())
            count += int(n.sum())
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--states", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    agent = JanusAgent.from_pretrained(args.run)
    base = JanusAgent.from_base(_recorded_base(agent, args.run))
    dataset = DecisionStepDataset(args.data, "val", agent.tokenizer, k=agent.k)
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(
        args.data / "decision_steps.parquet",
        columns=["split", "rho_train", "role", "target_action"],
    )
    table = table.filter(pc.equal(table["split"], "val"))
    table = table.filter(pc.not_equal(table["rho_train"], -1.0))
    roles = table.column("role").to_pylist()
    actions = table.column("target_action").to_pylist()
    rng = np.random.default_rng(0)
    offer_rows = [i for i, a in enumerate(actions) if a == "OFFER"]
    chosen = sorted(rng.choice(offer_rows, size=min(args.states, len(offer_rows)), replace=False))
    means = mean_offer_by_rho(agent, dataset, chosen, [roles[i] for i in chosen])
    print(f"mean greedy offer (normalised price) on {len(chosen)} fixed validation states")
    print("rho    " + " ".join(f"{r:6.1f}" for r in GRID))
    for role, values in means.items():
        finite = [(r, v) for r, v in zip(GRID, values, strict=True) if np.isfinite(v)]
        slope = np.polyfit([r for r, _ in finite], [v for _, v in finite], 1)[0]
        monotone = all(b >= a for (_, a), (_, b) in itertools.pairwise(finite))
        print(f"{role:7s}" + " ".join(f"{v:6.3f}" for v in values))
        print(f"         slope {slope:+.3f} per unit rho, monotonic: {monotone}")
    sample = sorted(rng.choice(len(dataset), size=min(1024, len(dataset)), replace=False))
    adapter_loss = val_loss(agent.model, dataset, sample, agent.tokenizer.pad_token_id, True)
    base_loss = val_loss(base.model, dataset, sample, base.tokenizer.pad_token_id, False)
    print(
        f"validation loss on {len(sample)} rows: adapter {adapter_loss:.4f}, rho-blind base "
        f"{base_loss:.4f}, margin {base_loss - adapter_loss:.4f} "
        f"({(base_loss - adapter_loss) / base_loss:.1%})"
    )


def _recorded_base(agent: JanusAgent, run: Path) -> str:
    from janus.agent import resolve_adapter_dir
    from janus.checkpoint import read_adapter_config

    return read_adapter_config(resolve_adapter_dir(run))["base_model_name_or_path"]


if __name__ == "__main__":
    main()
