"""Docker service records on Redis, with the host ports they hold reserved atomically.

:class:`RedisDockerServiceStore` keeps records like every record store
(``records:docker_service``, an event per write) and, in the same Lua script, the
``ports`` hash of reservations (``tcp/14000/127.0.0.1`` → ``web/http``).  The script
first checks every wanted port against the other services' reservations (the rule
of :func:`oauthproxy.containers.policy.clashes`: same protocol and port, and the
same bind address or a wildcard on either side), and only then writes: a refused
write changes nothing.  Redis runs the script atomically, so of two daemons
wanting one port exactly one gets it.

The environment is sealed at rest (it often holds passwords and API keys): with the
daemon's secret box, a record's ``environment`` is kept as one pair
``("=sealed", <sealed JSON of the pairs>)`` (``=`` cannot start a variable name, so no
real environment looks like that), also inside ``previous``.  Records written before
that are read as they are and sealed at their next write.
"""

from __future__ import annotations

import json
import secrets

from attrs import define, evolve
from twisted.internet.defer import Deferred
from zope.interface import implementer

from oauthproxy.containers.policy import Reservation, reservation_from_key
from oauthproxy.errors import Conflict, NotFound
from oauthproxy.interfaces import IDockerServiceStore
from oauthproxy.model import DockerService
from oauthproxy.storage.codec import KEY_FIELDS, decode, encode
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.events import Action
from oauthproxy.storage.records import RedisRecordStore, _pairs

#: the name of the one pair holding a sealed environment (no variable name has "=")
SEALED_ENVIRONMENT = "=sealed"

#: KEYS: records, events, ports.  ARGV: action, kind, key, record JSON ("" to delete), maxlen.
#: Returns {"ok", event id} | {"conflict", detail, field} | {"not_found", detail}.
WRITE_SCRIPT = """
local records, events, ports = KEYS[1], KEYS[2], KEYS[3]
local action, kind, key, json = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local old = redis.call('HGET', records, key)
if action == 'create' and old then
  return {'conflict', kind .. ' ' .. key .. ' already exists', 'name'}
elseif action ~= 'create' and not old then
  return {'not_found', 'no ' .. kind .. ' ' .. key}
end
local wanted = {}
local function add(record)
  if type(record['ports']) ~= 'table' then return end
  for _, p in ipairs(record['ports']) do
    wanted[#wanted + 1] = {p['protocol'], tostring(p['host']), p['bind'], key .. '/' .. p['name']}
  end
end
if json ~= '' then
  local record = cjson.decode(json)
  add(record)
  if type(record['previous']) == 'string' then add(cjson.decode(record['previous'])) end
end
local function wildcard(bind) return bind == '0.0.0.0' or bind == '::' end
local held = redis.call('HGETALL', ports)
local mine = {}
for i = 1, #held, 2 do
  local field, holder = held[i], held[i + 1]
  if string.sub(holder, 1, #key + 1) == key .. '/' then
    mine[#mine + 1] = field
  else
    local protocol, port, bind = string.match(field, '^([^/]+)/([^/]+)/(.+)$')
    for _, w in ipairs(wanted) do
      if protocol == w[1] and port == w[2] and
         (bind == w[3] or wildcard(bind) or wildcard(w[3])) then
        return {'conflict', 'port ' .. w[2] .. '/' .. w[1] .. ' on ' .. w[3] ..
                ' is reserved by service ' .. holder, 'ports'}
      end
    end
  end
end
for _, field in ipairs(mine) do redis.call('HDEL', ports, field) end
for _, w in ipairs(wanted) do
  redis.call('HSET', ports, w[1] .. '/' .. w[2] .. '/' .. w[3], w[4])
end
local id
if action == 'delete' then
  redis.call('HDEL', records, key)
  id = redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], '*',
                  'type', kind .. '_deleted', 'kind', kind, 'key', key)
else
  redis.call('HSET', records, key, json)
  id = redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], '*',
                  'type', kind .. '_' .. action .. 'd', 'kind', kind, 'key', key, 'record', json)
end
return {'ok', id}
"""


def port_conflict(detail: str) -> Conflict:
    """The Conflict of a write that wanted a port another service holds."""
    return Conflict(detail, field="ports")


def _environment_context(name: str) -> str:
    """The associated data of a service's sealed environment: it opens on this service only."""
    return f"docker_service:{name}:environment"


def seal_service(box: SecretBox | None, service: DockerService) -> DockerService:
    """``service`` as kept at rest: its environment (and its ``previous`` one) sealed."""
    if box is None:
        return service
    environment = service.environment
    if environment and environment[0][0] != SEALED_ENVIRONMENT:
        sealed = box.seal(json.dumps(environment), _environment_context(service.name))
        environment = ((SEALED_ENVIRONMENT, sealed),)
    previous = service.previous
    if previous is not None:
        previous = encode(seal_service(box, decode(DockerService, previous)))
    return evolve(service, environment=environment, previous=previous)


def open_service(box: SecretBox | None, stored: DockerService) -> DockerService:
    """``stored`` with its environment (and its ``previous`` one) opened."""
    if box is None:
        return stored
    environment = stored.environment
    if environment and environment[0][0] == SEALED_ENVIRONMENT:
        pairs = json.loads(box.open(environment[0][1], _environment_context(stored.name)))
        environment = tuple((str(name), str(value)) for name, value in pairs)
    previous = stored.previous
    if previous is not None:
        previous = encode(open_service(box, decode(DockerService, previous)))
    return evolve(stored, environment=environment, previous=previous)


@implementer(IDockerServiceStore)
@define
class RedisDockerServiceStore(RedisRecordStore[DockerService]):
    """Docker services keyed by name, ports reserved in ``ports``, the environment sealed
    (see the module docstring)."""

    box: SecretBox | None = None

    def _to_stored(self, record: DockerService) -> DockerService:
        """Seal the environment."""
        return seal_service(self.box, record)

    def _from_stored(self, record: DockerService) -> DockerService:
        """Open the environment."""
        return open_service(self.box, record)

    def _write(self, action: Action, key: str, record: DockerService | None) -> Deferred[str]:
        """Run the reserving write script; map its verdict to NotFound/Conflict; the event id."""
        json = "" if record is None else encode(self._to_stored(record))

        async def write() -> str:
            reply = await self.connection.eval(
                WRITE_SCRIPT,
                [self._hash, self.keys.events, self.keys.ports],
                [action, self.kind, key, json, self.stream_maxlen],
            )
            verdict = reply[0]
            if verdict == "conflict":
                if reply[2] == "ports":
                    raise port_conflict(reply[1])
                raise Conflict(reply[1], field=KEY_FIELDS[self.kind])
            if verdict == "not_found":
                raise NotFound(reply[1], field=KEY_FIELDS[self.kind])
            return str(reply[1])

        return Deferred.fromCoroutine(write())

    def reservations(self) -> Deferred[list[Reservation]]:
        """Every reserved port, by port, protocol and address."""

        async def reservations() -> list[Reservation]:
            flat = await self.connection.call("HGETALL", self.keys.ports)
            found = [reservation_from_key(k, v) for k, v in _pairs(flat).items()]
            return sorted(found, key=lambda r: (r.port, r.protocol, r.bind))

        return Deferred.fromCoroutine(reservations())

    def deployment(self) -> Deferred[str]:
        """The deployment id: set once (``SET NX``) by whoever asks first."""

        async def deployment() -> str:
            await self.connection.call("SET", self.keys.deployment, secrets.token_hex(8), "NX")
            value = await self.connection.call("GET", self.keys.deployment)
            return str(value)

        return Deferred.fromCoroutine(deployment())
