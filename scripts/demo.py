"""The whole story on one machine: marketplace, tunnel server with its web gateway, 3 simulated
Pis, a rental, the renter's web site over HTTPS.

    python scripts/demo.py [--name demo] [--down-after]     (scripts/demo.sh sets up first)
    python scripts/demo.py --name demo down                 clean up

Steps: start the reference marketplace (web hosting on) and the simulated devices, apply
p2pvps.fleet.site through the marketplace inventory, create a rental for a freshly generated
renter key, SSH in as the renter (and as root, who is nobody on the device) through the tunnel
server, start a web server in the renter's container, fetch its page over HTTPS at the lease's
own hostname through the gateway, end the rental, show the container wiped and the site gone.
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# pylint: disable=wrong-import-position
from tests.fixtures.fleet import (  # noqa: E402
    RENTER_IMAGE,
    Fleet,
    first_byte_seconds,
    install_built_collection,
    wait_for,
)

AGENT_INTERVAL_S = 15
PI_COUNT = 3
START = time.monotonic()
SITE = ("mkdir -p ~/site && echo '<h1>Hello from a rented Raspberry Pi</h1>' > ~/site/index.html && "
        "cd ~/site && setsid -f python3 -m http.server 8080 >/dev/null 2>&1 < /dev/null")


def step(text):
    print(f"[demo {time.monotonic() - START:6.1f}s] {text}", flush=True)


def workdir_of(name):
    return Path(tempfile.gettempdir()) / f"p2pvps-demo-{name}"


def renter_containers(pi):
    return pi.exec("docker", "ps", "-aq", "--filter", "label=p2pvps.lease", check=False).stdout.split()


def apply_site(fleet):
    graph = fleet.ansible("ansible-inventory", "-i", str(fleet.inventory), "--graph").stdout
    step("marketplace inventory:\n" + "\n".join("    " + line for line in graph.splitlines()))
    seconds, recap = fleet.apply_site()
    step(f"p2pvps.fleet.site applied in {seconds:.0f} s:\n" + "\n".join("    " + line for line in recap))
    step(f"renter image {RENTER_IMAGE} put on each Pi by the site's renter_image role "
         "(from a `docker save` tarball: no registry here)")


def renter_key(workdir):
    key = workdir / "renter_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(key)],
                       check=True)
    return key


def rent_and_return(fleet, pi):
    key = renter_key(fleet.workdir)
    fleet.wait_tunnel(pi)
    port, web_port = fleet.ports(pi)
    step(f"tunnel of {pi.name} is up: {fleet.tunnel.ip}:{port} -> {pi.name}:127.0.0.1:2222, "
         f"web 127.0.0.1:{web_port} -> {pi.name}:127.0.0.1:2280")
    rental = fleet.rent(pi, "alice", Path(f"{key}.pub").read_text().strip())
    created = time.monotonic()
    hostname = rental["web"]["hostname"]
    step(f"rental {rental['id']} created for alice on {pi.name}, web address {rental['web']['url']}; "
         f"waiting for the device's agent (timer every {AGENT_INTERVAL_S} s)")
    waited = fleet.wait_login(pi, "alice", key, AGENT_INTERVAL_S * 2 + 90)
    login = fleet.renter_ssh(pi, "alice", key, "uname -a; id").stdout.strip()
    shown = fleet.marketplace.get_rental(rental["id"])
    step(f"renter logged in {waited:.1f} s after the rental was created:\n"
         f"    $ ssh -i {key} -p {port} alice@{fleet.tunnel.ip} 'uname -a; id'\n"
         + "\n".join("    " + line for line in login.splitlines())
         + f"\n    the host key ssh shows at the first login is the one the marketplace shows for the rental: "
         f"{shown.get('ssh_host_key_fingerprint') or 'not reported yet'}")
    show_root(fleet, pi, key, port)
    fleet.renter_ssh(pi, "alice", key, SITE)
    step(f"alice started a web server in her container: ssh ... alice@{fleet.tunnel.ip} "
         "'cd ~/site && python3 -m http.server 8080 &'")
    first = first_byte_seconds(hostname, fleet.tunnel.ip, fleet.ca_file(), AGENT_INTERVAL_S * 2 + 60)
    page = fleet.curl(f"https://{hostname}/").stdout.strip()
    step(f"https://{hostname}/ answered {time.monotonic() - created:.1f} s after the rental was created "
         f"(the page was up {first:.1f} s after alice started it):\n"
         f"    $ curl --cacert gateway-root.crt --resolve {hostname}:443:{fleet.tunnel.ip} https://{hostname}/\n"
         f"    {page}")
    fleet.marketplace.end_rental(rental["id"])
    ended = time.monotonic()
    step(f"rental {rental['id']} ended; waiting for the wipe")
    waited = wait_for("the wipe", lambda: not renter_containers(pi), AGENT_INTERVAL_S * 2 + 60)[1]
    volumes = pi.exec("docker", "volume", "ls", "-q").stdout.split()
    left = [v for v in volumes if rental["id"] in v]

    def site_gone():
        return fleet.curl(f"http://{hostname}/", "-o", "/dev/null", "-w", "%{http_code}").stdout == "404"
    wait_for("the site's removal", site_gone, 60)
    step(f"container wiped {waited:.1f} s after the rental ended; lease volumes left: {left or 'none'}; "
         f"http://{hostname}/ answers 404 {time.monotonic() - ended:.1f} s after the end")


def show_root(fleet, pi, key, port):
    """Root in the renter's container is an unprivileged user of the device (user namespaces)."""
    inside = fleet.renter_ssh(pi, "root", key, "id -u; setsid -f sleep 30 >/dev/null 2>&1 < /dev/null").stdout.strip()
    if inside != "0":
        step("root login refused (this device does not remap user namespaces)")
        return
    container = renter_containers(pi)[0]
    top = pi.exec("docker", "top", container, "-eo", "pid,uid,args").stdout.splitlines()
    outside = next((line.split()[1] for line in top if "sleep 30" in line), "?")
    step(f"root login with the same key: uid 0 in the container is uid {outside} on the device\n"
         f"    $ ssh -p {port} root@{fleet.tunnel.ip} id -u")


def down(name):
    workdir = workdir_of(name)
    Fleet(name, workdir).down()
    shutil.rmtree(workdir, ignore_errors=True)
    step(f"demo {name} removed")


def up(name):
    workdir = workdir_of(name)
    workdir.mkdir(parents=True, exist_ok=True)
    tarball, collections = install_built_collection(workdir)
    step(f"collection {tarball.name} built and installed into {collections}, as from Galaxy: "
         "everything below runs that copy")
    fleet = Fleet(name, workdir, pi_count=PI_COUNT, interval_s=AGENT_INTERVAL_S, report=step,
                  collections_path=collections).up()
    apply_site(fleet)
    rent_and_return(fleet, fleet.pis[0])
    return fleet.inventory


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", default="up", choices=["up", "down"])
    parser.add_argument("--name", default="demo", help="names the containers, network and work dir")
    parser.add_argument("--down-after", action="store_true", help="clean up at the end (used by the test)")
    args = parser.parse_args(argv)
    if args.action == "down":
        down(args.name)
        return
    down(args.name)   # a previous run of the same name
    try:
        inventory = up(args.name)
    except BaseException:
        if args.down_after:
            down(args.name)
        raise
    if args.down_after:
        down(args.name)
        return
    step(f"done. The fleet is still up: ansible-inventory -i {inventory} --graph\n"
         f"    clean up: bash scripts/demo.sh down{'' if args.name == 'demo' else ' --name ' + args.name}")


if __name__ == "__main__":
    main()
