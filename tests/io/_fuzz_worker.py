"""The fuzzer's child process: loads each case under a memory and a time limit.

argv: workdir, memory headroom in MiB, seconds per case, base .slim files...
stdin: per case, 4-byte length, 1-byte base index, the file's bytes.
stdout: one JSON line per case: outcome, peak RSS (KiB) over the warm baseline (the three
bases loaded) and in all, detail.
Outcomes: "format_error", "identical" (same state and structure as the base), "different",
"bounded_by_oom" (a FormatError whose cause is MemoryError/RecursionError: a bound is
missing), "timeout", "network", "side_effect", "other:<Type>".
"""

import json
import os
import resource
import signal
import socket
import sys


class Timeout(BaseException):  # not an Exception: load()'s boundary must not catch it
    pass


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    workdir, headroom_mb, seconds, *bases = sys.argv[1:]
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(1)
        raise OSError("network disabled in the fuzzer")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    import torch

    torch.set_num_threads(1)
    import slimtorch as st

    def fingerprint(model):
        state = model.state_dict()
        return repr(model), {k: v.clone() for k, v in state.items()}

    refs = [fingerprint(st.load(b)) for b in bases]
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    limit = _vm_size() + int(headroom_mb) * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def alarm(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, alarm)
    case = os.path.join(workdir, "case.slim")
    out = sys.stdout
    stdin = sys.stdin.buffer
    print(json.dumps({"ready": True}), file=out, flush=True)
    while True:
        head = stdin.read(5)
        if len(head) < 5:
            return
        n, index = int.from_bytes(head[:4], "big"), head[4]
        data = stdin.read(n)
        with open(case, "wb") as f:
            f.write(data)
        before = set(os.listdir(workdir))
        detail = ""
        signal.setitimer(signal.ITIMER_REAL, float(seconds))
        try:
            model = st.load(case)
            signal.setitimer(signal.ITIMER_REAL, 0)
            text, state = fingerprint(model)
            ref_text, ref_state = refs[index]
            same = text == ref_text and state.keys() == ref_state.keys()
            same = same and all(torch.equal(state[k], ref_state[k]) for k in state)
            outcome = "identical" if same else "different"
            del model, state
        except st.FormatError as exc:
            signal.setitimer(signal.ITIMER_REAL, 0)
            chain, cause = [], exc
            while cause is not None and len(chain) < 10:
                chain.append(type(cause).__name__)
                cause = cause.__cause__
            oom = {"MemoryError", "RecursionError"} & set(chain)
            outcome = "bounded_by_oom" if oom else "format_error"
            detail = str(exc)[-160:]
        except Timeout:
            outcome = "timeout"
        except BaseException as exc:  # anything else is a bug the fuzzer found
            signal.setitimer(signal.ITIMER_REAL, 0)
            outcome, detail = f"other:{type(exc).__name__}", str(exc)[:200]
        if attempts:
            outcome, attempts[:] = "network", []
        if set(os.listdir(workdir)) != before:
            outcome = "side_effect"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        reply = {"outcome": outcome, "peak_kb": rss - base_rss, "rss_kb": rss, "detail": detail}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
