"""Where one ansible-inventory run's time goes: wall and CPU seconds of each phase, printed as JSON.

    python benchmarks/tools/inventory_phases.py [--detail] -- -i fleet.marketplace.yml --list

Runs ansible-inventory in this Python with timers around its phases: the whole run, the inventory's
parse (InventoryManager), the marketplace plugin's parse and in it its populate step, the inventory
file's parse by whichever plugin reads it, then for --list the host variables and the JSON text.
--detail also times each call of the ansible-core functions the populate step calls (wrap_var,
set_variable through the inventory and on the Host, add_host, add_child, the cache read); their
timers add their own cost, and nested ones overlap (add_host sets two variables on its Host).
ANSIBLE_COLLECTIONS_PATH chooses the copy of the collection.
The figures of benchmarks/results-notes.md ("Inventory") come from here."""
import functools
import json
import sys
import time

START = (time.perf_counter(), time.process_time())
SPENT = {}


def add_time(label, wall, cpu):
    total = SPENT.setdefault(label, {"wall_s": 0.0, "cpu_s": 0.0, "calls": 0})
    total["wall_s"] += wall
    total["cpu_s"] += cpu
    total["calls"] += 1


def timed(label, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            add_time(label, time.perf_counter() - wall, time.process_time() - cpu)
    return wrapper


def time_method(cls, name, label):
    original = cls.__dict__[name]
    if isinstance(original, staticmethod):
        setattr(cls, name, staticmethod(timed(label, original.__func__)))
    else:
        setattr(cls, name, timed(label, original))


def time_plugin(detail):
    """Timers in the marketplace plugin, once the CLI has installed the collection loader."""
    # pylint: disable=import-outside-toplevel
    from ansible_collections.p2pvps.fleet.plugins.inventory import marketplace  # pylint: disable=import-error
    time_method(marketplace.InventoryModule, "parse", "marketplace plugin: parse")
    time_method(marketplace.InventoryModule, "_populate", "marketplace plugin: populate")
    if not detail:
        return
    from ansible.inventory.data import InventoryData
    from ansible.inventory.host import Host
    from ansible.inventory import manager
    from ansible.plugins.cache import CachePluginAdjudicator
    marketplace.wrap_var = timed("populate: wrap_var", marketplace.wrap_var)
    if hasattr(manager, "_InventoryDataWrapper"):
        time_method(manager._InventoryDataWrapper, "set_variable",  # pylint: disable=protected-access
                    "populate: set_variable through the inventory (copy and tag)")
    time_method(Host, "set_variable", "populate: Host.set_variable")
    time_method(InventoryData, "add_host", "populate: add_host")
    time_method(InventoryData, "add_child", "populate: add_child")
    time_method(CachePluginAdjudicator, "__getitem__", "parse: cache read")


def install_timers(detail):
    # pylint: disable=import-outside-toplevel
    from ansible.cli.inventory import InventoryCLI
    from ansible.inventory.manager import InventoryManager
    time_method(InventoryCLI, "run", "run (after the CLI's imports)")
    time_method(InventoryManager, "parse_sources", "inventory parse (InventoryManager)")
    time_method(InventoryManager, "parse_source", "inventory parse: the source's plugin")
    time_method(InventoryCLI, "json_inventory", "--list: host variables (get_vars per host)")
    time_method(InventoryCLI, "dump", "--list: JSON text")
    original_init = InventoryManager.__init__

    def init_with_plugin_timers(self, *args, **kwargs):
        time_plugin(detail)
        InventoryManager.__init__ = original_init
        original_init(self, *args, **kwargs)

    InventoryManager.__init__ = init_with_plugin_timers


def main():
    argv = sys.argv[1:]
    options, args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else ([], argv)
    install_timers("--detail" in options)
    from ansible.cli.inventory import main as inventory_main  # pylint: disable=import-outside-toplevel
    sys.argv = ["ansible-inventory", *args]
    stdout = sys.stdout
    sys.stdout = open("/dev/null", "w", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
        inventory_main()
    except SystemExit:
        pass
    finally:
        sys.stdout.close()
        sys.stdout = stdout
    add_time("whole process", time.perf_counter() - START[0], time.process_time() - START[1])
    print(json.dumps({label: {key: round(value, 3) for key, value in spent.items()} for label, spent in SPENT.items()},
                     indent=1))


if __name__ == "__main__":
    main()
