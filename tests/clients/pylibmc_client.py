"""pylibmc for the preload tests: the commands of mc_client.c.
Run with Debian's /usr/bin/python3 (the one that sees python3-pylibmc)."""

import sys
import time

import pylibmc


def attempt(operation, *args, **kwargs):
    """An application's view: a failed operation is a miss, not a crash."""
    try:
        return operation(*args, **kwargs)
    except pylibmc.Error:
        return None


def main(argv):
    servers, command, args = argv[1].split(","), argv[2], argv[3:]
    mc = pylibmc.Client(servers, behaviors={"ketama": True})
    if command == "set-many":
        prefix, n, ttl = args[0], int(args[1]), int(args[2])
        stored = sum(1 for i in range(n) if attempt(mc.set, f"{prefix}{i}", f"v{i}", time=ttl))
        print(f"stored {stored}")
    elif command == "get-many":
        prefix, n = args[0], int(args[1])
        print(f"hits {sum(1 for i in range(n) if attempt(mc.get, f'{prefix}{i}') == f'v{i}')}")
    elif command == "mget-many":
        prefix, n = args[0], int(args[1])
        got = attempt(mc.get_multi, [f"{prefix}{i}" for i in range(n)]) or {}
        print(f"found {sum(1 for i in range(n) if got.get(f'{prefix}{i}') == f'v{i}')}")
    elif command == "load":
        prefix, n, seconds = args[0], int(args[1]), float(args[2])
        ops, errors, end, i = 0, {}, time.monotonic() + seconds, 0
        while time.monotonic() < end:
            for operation in (lambda: mc.set(f"{prefix}{i}", f"v{i}"), lambda: mc.get(f"{prefix}{i}")):
                ops += 1
                try:
                    operation()
                except pylibmc.Error as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
            i = (i + 1) % n
        print(f"ops {ops} errors {sum(errors.values())}")
        for name, count in sorted(errors.items()):
            print(f"error {name} {count}")
    elif command == "set":
        print("SUCCESS" if attempt(mc.set, args[0], args[1], time=int(args[2])) else "FAILURE")
    elif command == "get":
        value = attempt(mc.get, args[0])
        print("NOT FOUND" if value is None else f"VALUE {value}")
    elif command == "mget":
        got = mc.get_multi(args)
        text = {k: v.decode() if isinstance(v, bytes) else v for k, v in got.items()}
        print("\n".join(f"VALUE {k} {text[k]}" for k in sorted(text)))
        print("END")
    elif command == "incr":
        print(f"VALUE {attempt(mc.incr, args[0], int(args[1]))}")
    elif command == "count":
        print(f"acknowledged {sum(1 for _ in range(int(args[1])) if attempt(mc.incr, args[0], 1) is not None)}")
    elif command == "touch":
        print("SUCCESS" if attempt(mc.touch, args[0], int(args[1])) else "NOT FOUND")
    elif command == "servers":
        # pylibmc keeps no list of its own: get_stats() asks each server the handle has.
        attempt(mc.get, "servers")
        names = [name.decode().split()[0] for name, _ in (attempt(mc.get_stats) or [])]
        for name in names:
            print(f"server {name}")
        print(f"count {len(names)}")
    elif command == "delete":
        print("SUCCESS" if attempt(mc.delete, args[0]) else "NOT FOUND")
    else:
        return 64
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
