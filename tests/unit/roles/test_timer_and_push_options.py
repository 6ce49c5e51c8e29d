"""A role's timer and its push-mode task must run their module with the same options.

rental_agent: the device timer's configuration (templates/rental-agent.json.j2) and the push
converge (tasks/converge.yml); web_gateway: the gateway timer's (templates/web-routes.json.j2)
and the push refresh (tasks/refresh.yml). Each pair lists the options twice; an option set in
one and not the other would make the two modes fight (for rental_agent: each would recreate
the container the other made).
"""
import re

import pytest
import yaml

from tests.fixtures.common import ROOT

# role, its timer's template, its push task file, the module
ROLES = [
    ("rental_agent", "rental-agent.json.j2", "converge.yml", "p2pvps.fleet.rental"),
    ("web_gateway", "web-routes.json.j2", "refresh.yml", "p2pvps.fleet.web_routes"),
]


def timer_options(role, template):
    text = (ROOT / "roles" / role / "templates" / template).read_text()
    return dict(re.findall(r"'([a-z_]+)': (%s_[a-z_]+)" % role, text))


def push_options(role, task_file, module):
    task = yaml.safe_load((ROOT / "roles" / role / "tasks" / task_file).read_text())[0]
    return {name: re.search(r"(%s_[a-z_]+)" % role, value).group(1) for name, value in task[module].items()}


@pytest.mark.parametrize("role, template, task_file, module", ROLES, ids=[r[0] for r in ROLES])
def test_timer_and_push_pass_the_same_options_from_the_same_variables(role, template, task_file, module):
    timer, push = timer_options(role, template), push_options(role, task_file, module)
    assert timer, "no options found in the timer's template"
    push.pop("fail_on_api_error")   # a push-only choice; the timers never fail on API errors
    timer.pop("wait_s", None)       # a timer-only choice: the long-poll; push mode converges now
    assert push == timer


@pytest.mark.parametrize("role, template, task_file, module", ROLES, ids=[r[0] for r in ROLES])
def test_every_variable_has_a_default_and_an_argument_spec(role, template, task_file, module):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert sorted(set(timer_options(role, template).values()) - set(defaults)) == []
    assert sorted(set(defaults) ^ set(options)) == []
