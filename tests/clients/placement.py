"""Stores PREFIX0..PREFIX(N-1) with pylibmc configured as SETTING, for the
routing table test: where the keys land is where this configuration places them.
  /usr/bin/python3 placement.py SERVERS SETTING PREFIX N
  SETTING: defaults | ketama"""

import sys

import pylibmc

SETTINGS = {"defaults": {}, "ketama": {"ketama": True}}


def main(argv):
    servers, setting, prefix, n = argv[1].split(","), argv[2], argv[3], int(argv[4])
    if setting not in SETTINGS:
        return 64
    mc = pylibmc.Client(servers, behaviors=SETTINGS[setting])
    print(f"stored {sum(1 for i in range(n) if mc.set(f'{prefix}{i}', f'v{i}'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
