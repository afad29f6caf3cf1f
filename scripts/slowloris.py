"""Slow clients against a server, and a valid client beside them (issue 11's slowloris figure).

Opens CONNECTIONS connections that each send a request head one byte every INTERVAL seconds
(or, with --half-body, a whole head announcing a 1,000-byte body and then only 10 bytes of it),
and meanwhile sends one valid completion every 0.2 s on a new connection. Reports how many slow
connections the server closed, how long after their first byte, what it answered them, and how
the valid requests fared. Loopback only; ends after DURATION seconds.

Usage: python3 scripts/slowloris.py PORT [--connections 1000] [--interval 5] [--duration 40] [--half-body]
"""
import argparse
import asyncio
import statistics
import time

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--connections", type=int, default=1000)
parser.add_argument("--interval", type=float, default=5.0)
parser.add_argument("--duration", type=float, default=40.0)
parser.add_argument("--half-body", action="store_true")
options = parser.parse_args()
HOST = "127.0.0.1"
BODY = b'{"model":"meta-llama/Meta-Llama-3-8B","prompt":"Hello","max_tokens":4}'
VALID = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
         + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
HEAD = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 4000 + b"\r\n\r\n"


async def slow(results, opened):
    try:
        reader, writer = await asyncio.open_connection(HOST, options.port)
    except OSError as error:
        results.append(("refused", None, str(error)))
        return
    opened.append(1)
    start = time.monotonic()
    if options.half_body:
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n0123456789")
        await writer.drain()
        sent = len(HEAD)
    else:
        sent = 0
    answer = b""
    deadline = start + options.duration
    while time.monotonic() < deadline:
        if not options.half_body and sent < len(HEAD):
            try:
                writer.write(HEAD[sent:sent + 1])
                await writer.drain()
            except OSError:
                break
            sent += 1
        try:
            chunk = await asyncio.wait_for(reader.read(4096), timeout=options.interval)
        except asyncio.TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    else:
        writer.close()
        results.append(("still open", None, ""))
        return
    results.append(("closed", time.monotonic() - start, answer.split(b"\r\n", 1)[0].decode(errors="replace")))
    writer.close()


async def valid(latencies, statuses, stop):
    while not stop.is_set():
        began = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(HOST, options.port)
            writer.write(VALID)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
            line = data.split(b"\r\n", 1)[0].decode(errors="replace")
            statuses[line] = statuses.get(line, 0) + 1
            latencies.append(time.monotonic() - began)
        except (OSError, asyncio.TimeoutError) as error:
            statuses[f"failed: {type(error).__name__}"] = statuses.get(f"failed: {type(error).__name__}", 0) + 1
        await asyncio.sleep(0.2)


async def main():
    results, opened, latencies, statuses = [], [], [], {}
    stop = asyncio.Event()
    checker = asyncio.create_task(valid(latencies, statuses, stop))
    await asyncio.gather(*(slow(results, opened) for _ in range(options.connections)))
    stop.set()
    await checker
    closed = [r for r in results if r[0] == "closed"]
    answers = {}
    for r in closed:
        answers[r[2] or "(nothing)"] = answers.get(r[2] or "(nothing)", 0) + 1
    after = sorted(r[1] for r in closed)
    print(f"slow connections: {options.connections} tried, {len(opened)} opened, {len(closed)} closed by the server, "
          f"{sum(r[0] == 'still open' for r in results)} still open after {options.duration:.0f} s, {sum(r[0] == 'refused' for r in results)} refused")
    if after:
        print(f"  closed after their first byte: median {statistics.median(after):.1f} s, max {after[-1]:.1f} s; answers: {answers}")
    if latencies:
        latencies.sort()
        print(f"valid requests meanwhile: {sum(statuses.values())} sent, by answer {statuses}; "
              f"latency median {statistics.median(latencies)*1000:.1f} ms, max {latencies[-1]*1000:.1f} ms")
    else:
        print(f"valid requests meanwhile: none answered: {statuses}")


asyncio.run(main())
