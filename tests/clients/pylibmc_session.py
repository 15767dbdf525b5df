"""One long-lived pylibmc client (ketama) driven line by line: a test sends
`set KEY VALUE`, `get KEY` or `delete KEY` on stdin and reads one line back
(STORED, VALUE v, MISS, DELETED, or ERROR and pylibmc's error), so that it
can interleave the operations of clients on several hosts, each client
keeping its connections and its view of the state file as an application's
does. Run with Debian's /usr/bin/python3 (the one that sees python3-pylibmc)."""

import sys

import pylibmc


def answer(mc, words):
    command, key = words[0], words[1]
    if command == "set":
        return "STORED" if mc.set(key, words[2]) else "NOT STORED"
    if command == "get":
        value = mc.get(key)
        return "MISS" if value is None else f"VALUE {value}"
    if command == "delete":
        return "DELETED" if mc.delete(key) else "NOT FOUND"
    return f"ERROR unknown command {command}"


def main(argv):
    mc = pylibmc.Client(argv[1].split(","), behaviors={"ketama": True})
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            reply = answer(mc, words)
        except pylibmc.Error as error:
            reply = f"ERROR {type(error).__name__}"
        print(reply, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
