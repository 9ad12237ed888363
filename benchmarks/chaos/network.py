"""Network namespaces on a private bridge, and the nftables rules that cut them.

Each worker gets a namespace with one veth into a bridge whose address, in the root namespace,
is where the campaign's PostgreSQL and broker listen. A cut is a rule in the worker's own
`inet chaos` table, so healing one worker never touches another. The kernel has no netem:
a flaky link is a `numgen random` drop rule.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

TABLE = "chaos"
# The cuts a namespace can take; each names what it does to the worker's TCP traffic.
CUTS = ("partition", "isolate", "drop_replies", "reset", "flaky")


class NetworkUnavailable(RuntimeError):
    """Namespaces or nftables cannot be made here; the message says why."""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def unavailable_reason() -> str | None:
    """Why network faults cannot run on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "network faults need root (ip netns, nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"network faults need `{tool}` (apt-get install -y iproute2 nftables)"
    name = f"xqprobe{os.getpid() % 100000}"
    try:
        _ip("netns", "add", name)
        subprocess.run(
            ["ip", "netns", "exec", name, "nft", "add", "table", "inet", TABLE],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        return f"cannot make a network namespace with nftables: {exc.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@dataclass(frozen=True)
class Cut:
    """What happens to the worker's TCP traffic with the host on `ports` (all when empty).

    partition: silent, both directions; isolate: every packet to and from the host;
    drop_replies: only what the server sends, so a commit lands while its client times out;
    reset: each packet the worker sends is answered by a TCP reset; flaky: `percent` of the
    packets each way dropped at random.
    """

    kind: str
    ports: tuple[int, ...] = ()
    percent: int = 30

    def __post_init__(self) -> None:
        if self.kind not in CUTS:
            raise ValueError(f"unknown cut {self.kind!r}; choose from {', '.join(CUTS)}")

    def rules(self, host: str) -> list[str]:
        ports = ", ".join(map(str, self.ports))
        dport = f"tcp dport {{ {ports} }} " if self.ports else ""
        sport = f"tcp sport {{ {ports} }} " if self.ports else ""
        out_rule = in_rule = ""
        if self.kind == "partition":
            out_rule, in_rule = f"ip daddr {host} {dport}drop", f"ip saddr {host} {sport}drop"
        elif self.kind == "isolate":
            out_rule, in_rule = f"ip daddr {host} drop", f"ip saddr {host} drop"
        elif self.kind == "drop_replies":
            in_rule = f"ip saddr {host} {sport}drop"
        elif self.kind == "reset":
            out_rule = f"ip daddr {host} {dport or 'meta l4proto tcp '}reject with tcp reset"
        else:
            chance = f"numgen random mod 100 < {self.percent} drop"
            out_rule = f"ip daddr {host} {dport}{chance}"
            in_rule = f"ip saddr {host} {sport}{chance}"
        return [
            f"add rule inet {TABLE} {chain} {rule}"
            for chain, rule in (("out", out_rule), ("in", in_rule))
            if rule
        ]


@dataclass
class Namespace:
    name: str
    address: str
    host_address: str

    def exec_prefix(self) -> list[str]:
        """Prefix a command with this to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def _nft(self, script: str) -> None:
        subprocess.run(
            [*self.exec_prefix(), "nft", "-f", "-"],
            input=script,
            check=True,
            capture_output=True,
            text=True,
        )

    def apply(self, cuts: list[Cut]) -> None:
        """Make `cuts` the namespace's whole rule set: every one of them holds at once, and
        an empty list heals it."""
        rules = [rule for cut in cuts for rule in cut.rules(self.host_address)]
        self._nft(f"flush table inet {TABLE}\n" + "".join(f"{rule}\n" for rule in rules))


@dataclass
class Network:
    """A bridge in the root namespace and `count` namespaces on it, named after this process."""

    count: int
    prefix: str = field(default_factory=lambda: f"xq{os.getpid() % 100000}")
    namespaces: list[Namespace] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}b"

    @property
    def host_address(self) -> str:
        return f"{self._subnet}.1"

    _subnet: str = field(init=False, default="")

    @staticmethod
    def _free_subnet() -> str:
        """A 10.x.y.0/24 no route of this machine uses yet, the first tried drawn from the pid."""
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        for offset in range(250 * 50):
            slot = (os.getpid() + offset) % (250 * 50)
            subnet = f"10.{200 + slot % 50}.{slot // 50}"
            if f"{subnet}.0/24" not in routes:
                return subnet
        raise NetworkUnavailable("no free 10.x.y.0/24 subnet for the namespaces")

    def create(self) -> Network:
        self.destroy()  # the leftovers of a campaign of the same pid that was killed
        self._subnet = self._free_subnet()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for index in range(self.count):
            name, host_end = f"{self.prefix}n{index}", f"{self.prefix}h{index}"
            address = f"{self._subnet}.{11 + index}"
            _ip("netns", "add", name)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
            _ip("link", "set", host_end, "master", self.bridge, "up")
            _ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "link", "set", "lo", "up")
            namespace = Namespace(name, address, self.host_address)
            namespace._nft(
                f"add table inet {TABLE}\n"
                f"add chain inet {TABLE} out {{ type filter hook output priority 0; }}\n"
                f"add chain inet {TABLE} in {{ type filter hook input priority 0; }}\n"
            )
            self.namespaces.append(namespace)
        return self

    def destroy(self) -> None:
        for index in range(self.count):
            subprocess.run(["ip", "netns", "del", f"{self.prefix}n{index}"], capture_output=True)
            subprocess.run(["ip", "link", "del", f"{self.prefix}h{index}"], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self.namespaces.clear()
