# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route validation and rendering of the web gateway (pure; the module itself: tests/integration/test_web_routes.py)."""
from __future__ import annotations

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _web_routes as wr

DOMAIN = 'web.test'
LOW, HIGH = 30000, 30999


def entry(**fields):
    base = {'hostname': 'alice-k3j9xq.web.test', 'port': 30001, 'device_id': '9b2f4c1e-0d1a-4e2b-8c3d-1a2b3c4d5e6f',
            'lease_id': '5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60', 'expires_at': '2030-01-01T00:00:00Z'}
    base.update(fields)
    return {name: value for name, value in base.items() if value is not wr}


def parse(items):
    return wr.parse_routes(items, DOMAIN, LOW, HIGH)


# ---------------------------------------------------------------- one entry at a time

@pytest.mark.parametrize('hostname', [
    'alice-k3j9xq.web.test',
    'a.web.test',
    '0.web.test',
    'x' * 63 + '.web.test',
    'a-b-c.web.test',
])
def test_good_hostnames(hostname):
    routes, skipped = parse([entry(hostname=hostname)])
    assert skipped == [] and [r.hostname for r in routes] == [hostname]


BAD_ENTRIES = [
    # (fields, words in the reason)
    ({'hostname': wr}, 'no hostname'),
    ({'hostname': None}, 'no hostname'),
    ({'hostname': 42}, 'not a string'),
    ({'hostname': ['a.web.test']}, 'not a string'),
    ({'hostname': 'Alice.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'ALICE.WEB.TEST'}, 'not under .web.test'),
    ({'hostname': '-alice.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'alice-.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'x' * 64 + '.web.test'}, 'lower-case DNS label'),
    ({'hostname': '.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'web.test'}, 'not under .web.test'),
    ({'hostname': 'a.b.web.test'}, 'lower-case DNS label'),
    ({'hostname': '*.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'al_ice.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'alice.web.test.evil.org'}, 'not under .web.test'),
    ({'hostname': 'alice.evilweb.test'}, 'not under .web.test'),
    ({'hostname': 'alice.web.test.'}, 'not under .web.test'),
    ({'hostname': 'alice.web.test {\n\treverse_proxy 10.0.0.1\n}\nx.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'a{b}.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'alice\n.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'alice.web.test\n'}, 'not under .web.test'),
    ({'hostname': 'al ice.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'alice\u0430.web.test'}, 'lower-case DNS label'),
    ({'hostname': 'xn--alice.web.test\x00'}, 'not under .web.test'),
    ({'port': wr}, 'no port'),
    ({'port': None}, 'no port'),
    ({'port': '30001'}, 'not an integer'),
    ({'port': 30001.0}, 'not an integer'),
    ({'port': True}, 'not an integer'),
    ({'port': 29999}, 'outside 30000-30999'),
    ({'port': 31000}, 'outside 30000-30999'),
    ({'port': 22}, 'outside'),
    ({'port': -1}, 'outside'),
    ({'port': 2 ** 70}, 'outside'),
    ({'device_id': wr}, 'no device_id'),
    ({'device_id': ''}, 'device_id is not a valid id'),
    ({'device_id': '../etc'}, 'device_id is not a valid id'),
    ({'device_id': 'a' * 65}, 'device_id is not a valid id'),
    ({'device_id': 7}, 'device_id is not a valid id'),
    ({'lease_id': wr}, 'no lease_id'),
    ({'lease_id': 'l\nx'}, 'lease_id is not a valid id'),
    ({'lease_id': 'lease\n'}, 'lease_id is not a valid id'),
    ({'device_id': 'dev\n'}, 'device_id is not a valid id'),
    ({'lease_id': {'id': 'x'}}, 'lease_id is not a valid id'),
]


@pytest.mark.parametrize('fields, words', BAD_ENTRIES, ids=[str(i) for i in range(len(BAD_ENTRIES))])
def test_bad_entry_is_skipped_and_the_others_kept(fields, words):
    good = entry(hostname='bob-aaaaaa.web.test', port=30002)
    routes, skipped = parse([good, entry(**fields), entry(hostname='carol-bbbbbb.web.test', port=30003)])
    assert [r.hostname for r in routes] == ['bob-aaaaaa.web.test', 'carol-bbbbbb.web.test']
    assert len(skipped) == 1 and skipped[0]['index'] == 1
    assert words in skipped[0]['reason'], skipped[0]['reason']
    assert len(skipped[0]['reason']) <= 80


def test_not_an_object_is_skipped():
    routes, skipped = parse(['alice.web.test', None, entry()])
    assert len(routes) == 1
    assert [(s['index'], s['hostname'], s['reason']) for s in skipped] == [
        (0, None, 'not an object'), (1, None, 'not an object')]


def test_unknown_fields_are_ignored():
    routes, skipped = parse([entry(color='blue', tls={'x': 1}, port=30005)])
    assert skipped == [] and routes[0].port == 30005
    assert routes[0]._asdict() == {'hostname': 'alice-k3j9xq.web.test', 'port': 30005,
                                   'device_id': '9b2f4c1e-0d1a-4e2b-8c3d-1a2b3c4d5e6f',
                                   'lease_id': '5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60'}


def test_skipped_hostname_is_a_short_printable_excerpt():
    routes, skipped = parse([entry(hostname='A' * 5000 + '\n\x1b[31m.web.test')])
    assert routes == []
    shown = skipped[0]['hostname']
    assert len(shown) <= wr.MAX_SHOWN and shown.endswith('...') and '\n' not in shown and '\x1b' not in shown
    assert wr.shown('a\tb\nc') == 'a?b?c' and wr.shown(5) is None


# ---------------------------------------------------------------- duplicates

def test_duplicate_hostnames_are_all_refused():
    items = [entry(port=30001), entry(hostname='bob-aaaaaa.web.test', port=30002), entry(port=30003)]
    routes, skipped = parse(items)
    assert [r.hostname for r in routes] == ['bob-aaaaaa.web.test']
    assert [(s['index'], s['reason']) for s in skipped] == [(0, 'hostname used by 2 entries'),
                                                            (2, 'hostname used by 2 entries')]


def test_duplicate_ports_are_all_refused():
    items = [entry(hostname='a.web.test', port=30007), entry(hostname='b.web.test', port=30007),
             entry(hostname='c.web.test', port=30008), entry(hostname='d.web.test', port=30007)]
    routes, skipped = parse(items)
    assert [r.hostname for r in routes] == ['c.web.test']
    assert [s['index'] for s in skipped] == [0, 1, 3]
    assert all(s['reason'] == 'port 30007 used by 3 entries' for s in skipped)


def test_an_invalid_entry_does_not_make_a_duplicate():
    routes, skipped = parse([entry(port=30001), entry(port='30001')])
    assert len(routes) == 1 and [s['index'] for s in skipped] == [1]


def test_empty_list_is_no_routes():
    assert parse([]) == ([], [])


# ---------------------------------------------------------------- domain

@pytest.mark.parametrize('domain', ['web.test', 'p2pvps.localhost', 'localhost', 'a-b.c-d.example.org'])
def test_good_domains(domain):
    assert wr.check_domain(domain) is None


@pytest.mark.parametrize('domain', ['', None, 'web.test\n', 'web\n.test', 'Web.test', 'web..test', '.web.test', 'web.test.', 'w_b.test',
                                    'x' * 64 + '.test', 'a.' * 100 + 'test', '*.web.test', 'web test'])
def test_bad_domains(domain):
    assert wr.check_domain(domain)


def test_routes_under_another_domain():
    routes, skipped = wr.parse_routes([entry(hostname='alice.p2pvps.localhost')], 'p2pvps.localhost', 1, 65535)
    assert skipped == [] and routes[0].hostname == 'alice.p2pvps.localhost'


# ---------------------------------------------------------------- rendering

def test_render_one_site_block_per_hostname_importing_the_snippet():
    routes, dummy = parse([entry(hostname='bob-aaaaaa.web.test', port=30002, device_id='d2', lease_id='l2'),
                           entry(hostname='alice-k3j9xq.web.test', port=30001, device_id='d1', lease_id='l1')])
    text = wr.render(routes, 'p2pvps_route')
    assert text == (
        wr.HEADER % 'p2pvps_route'
        + '\n# lease l1 on device d1\n'
        'http://alice-k3j9xq.web.test, https://alice-k3j9xq.web.test {\n\timport p2pvps_route 30001\n}\n'
        '\n# lease l2 on device d2\n'
        'http://bob-aaaaaa.web.test, https://bob-aaaaaa.web.test {\n\timport p2pvps_route 30002\n}\n')
    assert wr.routes_in_file(text) == {'alice-k3j9xq.web.test': 30001, 'bob-aaaaaa.web.test': 30002}


def test_render_empty_is_the_header_only():
    text = wr.render([], 'p2pvps_route')
    assert text == wr.HEADER % 'p2pvps_route' and wr.routes_in_file(text) == {}


def test_render_refuses_a_bad_snippet_name():
    with pytest.raises(ValueError):
        wr.render([], 'x y')
    with pytest.raises(ValueError):
        wr.render([], 'p2pvps_route\n')


def test_rendering_is_stable():
    items = [entry(hostname='%s.web.test' % name, port=30000 + i) for i, name in enumerate('zyxab')]
    first = wr.render(parse(items)[0], 'p2pvps_route')
    assert first == wr.render(parse(list(reversed(items)))[0], 'p2pvps_route')


@pytest.mark.parametrize('text, routes', [
    (None, {}),
    ('', {}),
    ('garbage {\n}\n', {}),
    ('http://a.web.test, https://a.web.test {\n\timport p2pvps_route 30001\n}\n', {'a.web.test': 30001}),
    ('http://a.web.test, https://b.web.test {\n\timport p2pvps_route 30001\n}\n', {}),
])
def test_routes_in_file(text, routes):
    assert wr.routes_in_file(text) == routes


def test_as_map():
    routes, dummy = parse([entry()])
    assert wr.as_map(routes) == {'alice-k3j9xq.web.test': 30001}
