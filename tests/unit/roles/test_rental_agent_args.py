"""Push mode and pull mode must run the rental module with the same options.

The timer's configuration (roles/rental_agent/templates/rental-agent.json.j2) and the push
converge (roles/rental_agent/tasks/converge.yml) each list them; a sandbox option set in one
and not the other would make each mode recreate the container the other made.
"""
import re

import yaml

from tests.fixtures.common import ROOT

ROLE = ROOT / "roles" / "rental_agent"


def timer_options():
    template = (ROLE / "templates" / "rental-agent.json.j2").read_text()
    return dict(re.findall(r"'([a-z_]+)': (rental_agent_[a-z_]+)", template))


def push_options():
    task = yaml.safe_load((ROLE / "tasks" / "converge.yml").read_text())[0]
    args = task["p2pvps.fleet.rental"]
    return {name: re.search(r"(rental_agent_[a-z_]+)", value).group(1) for name, value in args.items()}


def test_push_and_pull_pass_the_same_options_from_the_same_variables():
    timer, push = timer_options(), push_options()
    assert timer, "no options found in the timer's template"
    push.pop("fail_on_api_error")   # a push-only choice; the timer never fails on API errors
    assert push == timer


def test_every_variable_has_a_default():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    missing = sorted(set(timer_options().values()) - set(defaults))
    assert missing == []
