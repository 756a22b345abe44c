"""`preflab prioritize`: score a dataset's prompts for active selection (serving.active).

preflab prioritize --dataset demo --members 5 --seed 0
preflab prioritize --dataset demo --selection uncertainty     # and let the queue follow the scores
"""

from __future__ import annotations

import click

from db import settings
from serving.cli.remote import server_url
from serving.cli.root import open_store


def register(cli: click.Group) -> None:
    @cli.command("prioritize")
    @click.option("--dataset", required=True, help="The dataset whose prompts are scored.")
    @click.option(
        "--members",
        type=click.IntRange(min=2, max=50),
        default=5,
        show_default=True,
        help="Bootstrap members of the reward-model ensemble.",
    )
    @click.option(
        "--l2", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True, help="L2 penalty."
    )
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resamples.")
    @click.option(
        "--selection",
        type=click.Choice(settings.SELECTIONS),
        help="Also set the dataset's queue order: 'uncertainty' follows the scores, 'order' goes by prompt id.",
    )
    @click.pass_context
    def prioritize_cmd(ctx, dataset, members, l2, seed, selection) -> None:
        """Store a priority per prompt of DATASET: the reward-model ensemble's uncertainty for prompts with answers,
        the distance to labelled prompts for prompts without (docs/active.md).

        With a server holding the database, the server computes them (POST /api/datasets/{name}/priorities; sign
        in as an admin first with `preflab login`)."""
        from serving.active.ensemble import EnsembleConfig
        from serving.active.prioritize import prioritize

        url = server_url(ctx)
        if url:
            from urllib.parse import quote

            from serving.cli.remote import Client

            with Client(url) as client:
                path = f"/api/datasets/{quote(dataset, safe='')}"
                report = client.post(f"{path}/priorities", json={"members": members, "l2": l2, "seed": seed})
                if selection:
                    client.request("PUT", f"{path}/settings", json={"selection": selection})
        else:
            store = open_store(ctx)
            store.dataset_id(dataset)  # unknown dataset: one line naming the known ones, before the model loads
            report = prioritize(store, dataset, cfg=EnsembleConfig(members=members, l2=l2, seed=seed))
            if selection:
                settings.set_settings(store, store.dataset_id(dataset), selection=selection)
        click.echo(
            f"{dataset}: {report['ensemble']} prompts scored by uncertainty, {report['novelty']} by novelty "
            f"({report['pairs']} pairs, {report['members']} members)"
            + (f"; selection is now '{selection}'" if selection else "")
        )
