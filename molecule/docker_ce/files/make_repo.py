"""Build signed apt repositories of stand-in Docker CE packages on the simulated Pi.

Docker's own packages cannot be downloaded here, so the stand-ins are Debian's: docker-ce is
docker.io and containerd.io is containerd, downloaded from the device's configured apt sources and
renamed (each conflicts with, replaces and provides the package it was made from, as Docker's do);
docker-ce-cli is empty, since docker.io holds the client too. They are served from a file://
repository laid out like download.docker.com (dists/<codename>/InRelease, component "stable"),
signed with a key made here. A second copy, signed by another key, stands for a repository the
device must not trust. Usage: make_repo.py REPO_DIR KEY_FILE ROGUE_REPO_DIR
"""
import datetime
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# stand-in name: the Debian package it is made from (None: an empty package)
STAND_INS = {"docker-ce": "docker.io", "containerd.io": "containerd", "docker-ce-cli": None}
VERSION = "5:27.0.0-1~p2pvps.stand.in"
COMPONENT = "stable"


def run(*cmd, **kwargs):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs).stdout


def gpg(home, *args):
    return run("gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", "", *args)


def codename():
    fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    return fields["VERSION_CODENAME"].strip('"')


def renamed_control(control, name, source):
    """The source package's control file, as the stand-in `name` that takes its place."""
    fields = [line for line in control.splitlines()
              if not re.match(r"(Package|Version|Conflicts|Replaces|Provides|Breaks|Description|Installed-Size):",
                              line) and not line.startswith(" ")]
    fields[:0] = [f"Package: {name}", f"Version: {VERSION}"]
    if source:
        # a versioned Provides satisfies docker.io's versioned dependency on containerd
        version = re.search(r"^Version: (\S+)$", control, re.M).group(1)
        fields += [f"Conflicts: {source}", f"Replaces: {source}", f"Provides: {source} (= {version})"]
    fields.append(f"Description: stand-in for Docker CE's {name}, made from Debian's {source or 'nothing'} (tests only)")
    return "\n".join(fields) + "\n"


def build_deb(name, source, arch, pool, downloads):
    root = Path(tempfile.mkdtemp()) / name
    if source:
        deb = next(downloads.glob(f"{source}_*.deb"))
        run("dpkg-deb", "-R", str(deb), str(root))
        control = (root / "DEBIAN" / "control").read_text()
    else:
        (root / "DEBIAN").mkdir(parents=True)
        control = f"Architecture: {arch}\nMaintainer: p2pvps.fleet tests <tests@p2pvps.invalid>\n"
    (root / "DEBIAN" / "control").write_text(renamed_control(control, name, source))
    out = pool / f"{name}_{arch}.deb"
    run("dpkg-deb", "-Zgzip", "-z1", "--build", "--root-owner-group", str(root), str(out))
    shutil.rmtree(root.parent)
    return out


def packages_stanza(deb, repo):
    data = deb.read_bytes()
    control = run("dpkg-deb", "-f", str(deb)).rstrip("\n")
    return (f"{control}\nFilename: {deb.relative_to(repo)}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n")


def release(suite, arch, indexes):
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")
    lines = ["Origin: p2pvps stand-in", "Label: Docker CE stand-in", f"Suite: {suite}", f"Codename: {suite}",
             f"Date: {date}", f"Architectures: {arch}", f"Components: {COMPONENT}", "SHA256:"]
    lines += [f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}" for name, data in indexes.items()]
    return "\n".join(lines) + "\n"


def make_key(home, who):
    home.mkdir(mode=0o700, parents=True)
    gpg(home, "--quick-gen-key", who, "ed25519", "sign", "never")
    return home


def make_repo(repo, key_home, debs, arch):
    suite = codename()
    pool = repo / "pool" / COMPONENT
    pool.mkdir(parents=True)
    for deb in debs:
        shutil.copy(deb, pool)
    packages = "\n".join(packages_stanza(pool / deb.name, repo) for deb in debs)
    index = f"{COMPONENT}/binary-{arch}/Packages"
    dists = repo / "dists" / suite
    (dists / index).parent.mkdir(parents=True)
    (dists / index).write_text(packages)
    (dists / "Release").write_text(release(suite, arch, {index: packages.encode()}))
    gpg(key_home, "--clearsign", "-o", str(dists / "InRelease"), str(dists / "Release"))


def main(repo, key_file, rogue_repo):
    work = Path(tempfile.mkdtemp())
    downloads = work / "downloads"
    downloads.mkdir()
    run("apt-get", "download", *filter(None, STAND_INS.values()), cwd=downloads)
    arch = run("dpkg", "--print-architecture").strip()
    built = work / "built"
    built.mkdir()
    debs = [build_deb(name, source, arch, built, downloads) for name, source in STAND_INS.items()]
    trusted = make_key(work / "trusted", "Docker CE stand-in <docker-ce@p2pvps.invalid>")
    make_repo(Path(repo), trusted, debs, arch)
    make_repo(Path(rogue_repo), make_key(work / "rogue", "Rogue repository <rogue@p2pvps.invalid>"), debs, arch)
    Path(key_file).write_text(gpg(trusted, "--armor", "--export"))
    shutil.rmtree(downloads)


if __name__ == "__main__":
    main(*sys.argv[1:])
