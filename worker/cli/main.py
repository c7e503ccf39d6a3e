"""The ``livedub`` command."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from worker.core.queues import ALL_QUEUES


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """livedub: dub live streams."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )


@main.command()
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path(".livedub/run"), show_default=True)
@click.option("--rtmp-port", type=int, default=1935, show_default=True, help="0 picks a free port.")
@click.option("--api-port", type=int, default=8080, show_default=True, help="0 picks a free port.")
@click.option("--http-port", type=int, default=8081, show_default=True, help="nginx stat page; 0: free.")
@click.option("--redis-port", type=int, default=6379, show_default=True, help="0 picks a free port.")
@click.option("--flower-port", type=int, default=5555, show_default=True, help="0 picks a free port.")
@click.option("--sts-port", type=int, default=8765, show_default=True, help="0 picks a free port.")
@click.option("--store-port", type=int, default=9000, show_default=True, help="The store role's port; 0: free.")
@click.option("--only", "only", metavar="ROLE,...",
              help="Run only these roles: redis, store, api, media-server, sts-service, ingest, sts, collect, "
                   "remux, publish, flower (default: all but store and flower).")
@click.option("--bind", default="127.0.0.1", show_default=True,
              help="The address the servers listen on, and the one the state file's URLs name.")
@click.option("--redis-url", help="A Redis that runs elsewhere (complete, with its password).")
@click.option("--store-url", help="A segment store that runs elsewhere: s3://KEY:SECRET@HOST:PORT/BUCKET/PREFIX, "
                                  "s3+http://..., or file:///path.")
@click.option("--rtmp-url", help="A media server that runs elsewhere (rtmp://HOST:PORT).")
@click.option("--scale", multiple=True, metavar="POOL=N", help="Run N workers of a pool; repeatable.")
@click.option("--engine", type=click.Choice(["offline", "echo"]), default="offline", show_default=True,
              help="The STS engine to run.")
@click.option("--sts-url", help="Use this running STS service (LIVEDUB_STS_TOKEN for its key); start none.")
@click.option("--free-ports", is_flag=True, help="Pick a free port for every service.")
@click.option("--flower", is_flag=True, help="Also run the Flower dashboard.")
@click.option("--open", "open_publishing", is_flag=True,
              help="Rehearsal only: any publish to live/<id>/in starts a job, with no stream key.")
@click.option("--state-file", type=click.Path(path_type=Path), help="Write the URLs as JSON here when ready.")
def up(
    run_dir: Path, rtmp_port: int, api_port: int, http_port: int, redis_port: int, flower_port: int,
    sts_port: int, store_port: int, only: str | None, bind: str, redis_url: str | None, store_url: str | None,
    rtmp_url: str | None, scale: tuple[str, ...], engine: str, sts_url: str | None, free_ports: bool,
    flower: bool, open_publishing: bool, state_file: Path | None,
) -> None:
    """Run the stack, or some of its roles, in the foreground. Ctrl-C stops it."""
    from worker.core.store_url import StoreUrlError, parse_store_url
    from worker.devstack.roles import DEFAULT_ROLES, parse_roles, parse_scale
    from worker.devstack.stack import LocalStack, StackConfig

    if free_ports:
        rtmp_port = api_port = http_port = redis_port = flower_port = sts_port = store_port = 0
    try:
        roles = parse_roles(only) if only else DEFAULT_ROLES
        pools = parse_scale(scale)
        if store_url:
            parse_store_url(store_url)
    except (ValueError, StoreUrlError) as exc:
        raise click.BadParameter(str(exc)) from exc
    cfg = StackConfig(
        run_dir=run_dir, rtmp_port=rtmp_port, api_port=api_port, http_port=http_port,
        redis_port=redis_port, flower_port=flower_port, flower=flower, sts_port=sts_port, engine=engine,
        store_port=store_port, roles=roles, scale=pools, host=bind, store_url=store_url, rtmp_url=rtmp_url,
        sts_url=sts_url, sts_token=os.environ.get("LIVEDUB_STS_TOKEN"),
        redis_url=redis_url or os.environ.get("LIVEDUB_REDIS_URL"), hook_secret=os.environ.get("LIVEDUB_HOOK_SECRET"),
        open_publishing=open_publishing,
    )
    stack = LocalStack(cfg)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        stack.start()
        s = stack.state()
        click.echo(f"livedub is up: {', '.join(s['roles'])} (logs in {run_dir / 'logs'}):")
        click.echo(f"  ingest  {s['ingest_url_template']}   (publish here)")
        click.echo(f"  output  {s['output_url_template']}   (play the dub here)")
        click.echo(f"  api     {s['api_url']}")
        click.echo(f"  redis   {s['redis_url']}")
        click.echo(f"  store   {s['store_url']}")
        click.echo(f"  sts     {s['sts_url']}" + (f"  (engine {s['engine']})" if s["engine"] else ""))
        click.echo(f"  stat    {s['stat_url']}")
        if s["flower_url"]:
            click.echo(f"  flower  {s['flower_url']}")
        click.echo(f"  hook secret in {s['hook_secret_file']}; operator token in {run_dir / 'operator_token'}")
        if open_publishing:
            click.echo("  OPEN: any publish starts a job, without a stream key (--open; rehearsal only)")
        else:
            click.echo("  create a stream and its key: livedub streams create ID --state-file <state file>")
        if state_file:
            stack.write_state(state_file)
        while not stop.wait(0.5):
            try:
                stack.restart_dead()
            except RuntimeError as exc:
                click.echo(f"livedub: {exc}; stopping", err=True)
                break
    finally:
        stack.stop()
        if state_file:
            state_file.unlink(missing_ok=True)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--pool", type=click.Choice(ALL_QUEUES), required=True, help="The queue this worker serves.")
@click.option("-c", "--concurrency", type=int, help="Default: 16 threads (ingest, publish) or 2 processes.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(pool: str, concurrency: int | None, celery_args: tuple[str, ...]) -> None:
    """A worker for one pool: a thin wrapper over ``celery -A tasks worker -Q NAME``; other options go to
    celery as they are."""
    from worker.devstack.stack import DEFAULT_POOL, POOL_KIND

    kind, default_c = POOL_KIND.get(pool, DEFAULT_POOL)
    args = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", pool, "-n", f"{pool}@%h",
            "-P", kind, "-c", str(concurrency or default_c), "-E", "-l", "info", *celery_args]
    os.execv(sys.executable, args)


@main.command()
@click.option("--engine", type=click.Choice(["offline", "echo"]), default="offline", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--namespace", default="/", show_default=True, help="Socket.IO namespace the service serves.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File holding the API key (else LIVEDUB_STS_TOKEN).")
@click.option("--insecure", is_flag=True, help="Run without an API key (local experiments only).")
@click.option("--workers", type=int, default=1, show_default=True, help="Engine threads.")
@click.option("--queue-capacity", type=int, default=64, show_default=True)
@click.option("--max-audio-mb", type=float, default=10.0, show_default=True)
@click.option("--queue-mb", type=float, default=256.0, show_default=True, help="The work queue's bound in audio MB.")
@click.option("--max-streams-per-connection", type=int, default=64, show_default=True)
@click.option("--echo-delay-factor", type=float, default=0.0, help="echo: take this times real time.")
@click.option("--echo-delay", "echo_delays", multiple=True, metavar="SEQ=MS",
              help="echo: delay fragment SEQ by MS milliseconds (fault drills); repeatable.")
@click.option("--model-dir", help="offline: a CTranslate2 Whisper model directory (default: tiny.en wheel).")
@click.option("--device", default="cpu", show_default=True, help="offline: cpu or cuda.")
@click.option("--compute-type", help="offline: int8, float16, ...  [default: float16 on cuda, else int8]")
@click.option("--beam-size", type=click.IntRange(min=1), envvar="LIVEDUB_STS_BEAM_SIZE",
              help="offline: Whisper's beam; 1 is greedy (what 2 CPU cores keep up with).  "
                   "[default: 5 on cuda, else 1]")
def sts(engine: str, host: str, port: int, namespace: str, token_file: Path | None, insecure: bool, workers: int,
        queue_capacity: int, max_audio_mb: float, queue_mb: float, max_streams_per_connection: int,
        echo_delay_factor: float, echo_delays: tuple[str, ...],
        model_dir: str | None, device: str, compute_type: str | None, beam_size: int | None) -> None:
    """Run the speech-to-speech Socket.IO service. Exits non-zero when the engine cannot load its models."""
    import asyncio

    from worker.sts.engines import make_engine
    from worker.sts.serve import serve
    from worker.sts.server import StsServer

    token = token_file.read_text().strip() if token_file else os.environ.get("LIVEDUB_STS_TOKEN") or None
    if token is None and not insecure:
        raise click.UsageError("no API key: set LIVEDUB_STS_TOKEN or --token-file (or --insecure for local tests)")
    try:
        delays = {int(k): float(v) for k, v in (d.split("=", 1) for d in echo_delays)}
    except ValueError as exc:
        raise click.BadParameter(f"--echo-delay takes SEQ=MS: {exc}") from exc
    eng = make_engine(engine, delay_factor=echo_delay_factor, delays=delays, model_dir=model_dir, device=device,
                      compute_type=compute_type, beam_size=beam_size)
    server = StsServer(eng, token, namespace=namespace, workers=workers, queue_capacity=queue_capacity,
                       max_audio_bytes=int(max_audio_mb * 1024 * 1024), queue_bytes=int(queue_mb * 1024 * 1024),
                       max_sessions_per_connection=max_streams_per_connection)
    click.echo(f"livedub sts: engine={engine} namespace={namespace} on http://{host}:{port}")
    failure = asyncio.run(serve(server, host, port))
    if failure is not None:
        raise click.ClickException(f"the {engine} engine cannot serve: {failure}")


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to record the dubbed output (mp4).")
@click.option("--state-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path(".livedub/run/state.json"), show_default=True, help="Written by livedub up.")
@click.option("--stream-id", help="Default: dub-<random>.")
@click.option("--target-lang", help="Target language (default: the deployment's).")
@click.option("--segment-seconds", type=float, help="Segment length for this stream.")
@click.option("--segmentation", type=click.Choice(["speech", "fixed"]),
              help="Units that follow the speaker (speech) or fixed fragments (default: the deployment's).")
@click.option("--latency", "latency_s", type=float, help="Speech mode: how far behind the input the output runs (s).")
def dub(input_path: Path, output: Path, state_file: Path, stream_id: str | None, target_lang: str | None,
        segment_seconds: float | None, segmentation: str | None, latency_s: float | None) -> None:
    """Publish INPUT to the running stack in real time, record the dub to OUTPUT, print a JSON report."""
    from worker.cli.dub import load_state, run_dub

    state = load_state(state_file)
    more = {"segmentation": segmentation, "latency_s": latency_s}
    if sys.stderr.isatty():
        with click.progressbar(length=1000, label="dubbing", file=sys.stderr) as bar:
            def progress(done: float, total: float) -> None:
                bar.update(int(1000 * min(done / total, 1.0)) - bar.pos)

            rep = run_dub(input_path, output, state, stream_id, target_lang, segment_seconds, progress, more=more)
    else:
        rep = run_dub(input_path, output, state, stream_id, target_lang, segment_seconds, more=more)
    click.echo(rep.model_dump_json(indent=2))
    sys.exit(0 if rep.ok else 1)


@main.command()
@click.option("--seconds", type=int, default=12, show_default=True, help="Length of the sample stream.")
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path(".livedub/demo"), show_default=True)
def demo(seconds: int, run_dir: Path) -> None:
    """Start the local stack, publish a sample stream through it in real time, print its record."""
    from worker.cli.demo import run_demo

    record = run_demo(run_dir, seconds, echo=click.echo)
    sys.exit(0 if record.get("state") == "ended" else 1)




@main.group()
def streams() -> None:
    """Create streams and manage their keys, with the operator token of a stack's state file."""


@streams.command("create")
@click.argument("stream_id")
@click.option("--state-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path(".livedub/run/state.json"), show_default=True)
@click.option("--target-lang", help="Target language (default: the deployment's).")
@click.option("--segment-seconds", type=float, help="Segment length for this stream.")
@click.option("--segmentation", type=click.Choice(["speech", "fixed"]), help="Default: the deployment's.")
@click.option("--latency", "latency_s", type=float, help="Speech mode: the output's delay (s).")
@click.option("--private", is_flag=True, help="Readers of the output need the play key.")
def streams_create(stream_id: str, state_file: Path, target_lang: str | None, segment_seconds: float | None,
                   segmentation: str | None, latency_s: float | None, private: bool) -> None:
    """Create STREAM_ID: prints its publish key and the URL to publish to (shown once)."""
    import requests

    from worker.cli.dub import auth_headers

    state = json.loads(state_file.read_text())
    body = {"stream_id": stream_id, "private": private, **{k: v for k, v in (
        ("target_language", target_lang), ("segment_seconds", segment_seconds), ("segmentation", segmentation),
        ("latency_s", latency_s)) if v is not None}}
    resp = requests.post(f"{state['api_url']}/v1/streams", json=body, headers=auth_headers(state), timeout=10)
    if resp.status_code != 201:
        raise click.ClickException(f"{resp.status_code}: {resp.json().get('reason', resp.text)}")
    click.echo(json.dumps(resp.json(), indent=2))
