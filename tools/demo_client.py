"""make demo's application: a read-through cache over pylibmc. Reads keys
0..N-1; a miss counts as a database read followed by a set. Prints
"reads N hits H database_reads D". Run with Debian's /usr/bin/python3."""

import sys

import pylibmc


def main():
    servers, count = sys.argv[1].split(","), int(sys.argv[2])
    mc = pylibmc.Client(servers, behaviors={"ketama": True})
    hits = database_reads = 0
    for i in range(count):
        key = f"user:{i}"
        try:
            value = mc.get(key)
        except pylibmc.Error:
            value = None
        if value is not None:
            hits += 1
            continue
        database_reads += 1  # the application would query its database here
        try:
            mc.set(key, f"profile of user {i}")
        except pylibmc.Error:
            pass
    print(f"reads {count} hits {hits} database_reads {database_reads}")


if __name__ == "__main__":
    main()
