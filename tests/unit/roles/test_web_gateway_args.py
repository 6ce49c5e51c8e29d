"""The web gateway's timer and its push refresh must run web_routes with the same options.

The timer's configuration (roles/web_gateway/templates/web-routes.json.j2) and the refresh
task (roles/web_gateway/tasks/refresh.yml) each list them.
"""
import re

import yaml

from tests.fixtures.common import ROOT

ROLE = ROOT / "roles" / "web_gateway"


def timer_options():
    template = (ROLE / "templates" / "web-routes.json.j2").read_text()
    return dict(re.findall(r"'([a-z_]+)': (web_gateway_[a-z_]+)", template))


def push_options():
    task = yaml.safe_load((ROLE / "tasks" / "refresh.yml").read_text())[0]
    args = task["p2pvps.fleet.web_routes"]
    return {name: re.search(r"(web_gateway_[a-z_]+)", value).group(1) for name, value in args.items()}


def test_timer_and_refresh_pass_the_same_options_from_the_same_variables():
    timer, push = timer_options(), push_options()
    assert timer, "no options found in the timer's template"
    push.pop("fail_on_api_error")   # a push-only choice; the timer never fails on API errors
    assert push == timer


def test_every_variable_has_a_default_and_an_argument_spec():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert sorted(set(timer_options().values()) - set(defaults)) == []
    assert sorted(set(defaults) ^ set(specs)) == []
