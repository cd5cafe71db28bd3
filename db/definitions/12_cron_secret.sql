-- The cron secret: what authorizes POST /rpc/kpi_history_cron (and the health report over HTTP).
-- Only salted SHA-256 hashes are stored (kpi.cron_secrets), in a table no API role can read.
-- Several secrets may be active at once: that is how rotation works (add the new one, move the
-- callers over, retire the old one). Installed from the environment by `npm run cron-secret`.

create or replace function kpi.cron_secret_hash(salt bytea, secret text) returns bytea
language sql immutable parallel safe
return sha256(salt || convert_to(secret, 'UTF8'));

-- Adds a secret (idempotent: an active identical secret is left as is). Shorter than 32
-- characters is refused: a cron secret guards a write endpoint on the open internet.
create or replace function kpi.add_cron_secret(secret text) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  added boolean := false;
  new_salt bytea := uuid_send(gen_random_uuid());
begin
  if secret is null or length(secret) < 32 then
    perform kpi.raise_error('INVALID_INPUT',
      format('CRON_SECRET must be at least 32 characters (it has %s)', coalesce(length(secret), 0)),
      'Generate one with: openssl rand -base64 48');
  end if;
  if not exists (select from kpi.cron_secrets s
                 where s.retired_at is null and s.secret_sha256 = kpi.cron_secret_hash(s.salt, secret)) then
    insert into kpi.cron_secrets (salt, secret_sha256) values (new_salt, kpi.cron_secret_hash(new_salt, secret));
    added := true;
  end if;
  return jsonb_build_object('added', added,
    'active_secrets', (select count(*) from kpi.cron_secrets where retired_at is null));
end
$$;

comment on function kpi.add_cron_secret(text) is 'Adds an active cron secret (32+ characters), keeping the others: the first step of a rotation.';

-- Retires every active secret but the newest `keep`.
create or replace function kpi.retire_cron_secrets(keep integer default 1) returns jsonb
language sql volatile
set search_path = ''
as $$
  with retired as (
    update kpi.cron_secrets set retired_at = clock_timestamp()
    where retired_at is null
      and id not in (select id from kpi.cron_secrets where retired_at is null order by id desc limit greatest(keep, 0))
    returning 1)
  select jsonb_build_object('retired', (select count(*) from retired),
    'active_secrets', (select count(*) from kpi.cron_secrets where retired_at is null) - (select count(*) from retired))
$$;

comment on function kpi.retire_cron_secrets(integer) is 'Retires all active cron secrets but the newest `keep` (default 1): the last step of a rotation.';

-- Installing a cron secret leaves exactly that secret active, whatever was active before (docker
-- compose runs it on every start; mid-rotation, a newer secret is retired too).
create or replace function kpi.install_cron_secret(secret text) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  added jsonb := kpi.add_cron_secret(secret);
  retired bigint;
begin
  update kpi.cron_secrets s set retired_at = clock_timestamp()
  where s.retired_at is null and s.secret_sha256 <> kpi.cron_secret_hash(s.salt, secret);
  get diagnostics retired = row_count;
  return jsonb_build_object('added', added -> 'added', 'retired', retired,
    'active_secrets', (select count(*) from kpi.cron_secrets where retired_at is null));
end
$$;

comment on function kpi.install_cron_secret(text) is
  'Makes `secret` (32+ characters) the only active cron secret, whatever was active before.';

-- True when `candidate` is one of the active cron secrets.
create or replace function kpi_api.cron_secret_matches(candidate text) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (
    select from kpi.cron_secrets s
    where s.retired_at is null and s.secret_sha256 = kpi.cron_secret_hash(s.salt, candidate))
$$;

-- Refuses the request with FORBIDDEN (403) and still commits an audit row: the answer is set with
-- response.status instead of an exception, which would roll the audit row back. Repeated denials
-- of one kind in one minute add to one row's count.
create or replace function kpi_api.deny(endpoint text, reason text) returns json
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  insert into kpi.api_denials as d (endpoint, reason, db_role, jwt_sub)
  values (endpoint, reason, current_setting('role'), kpi_api.request_claims() ->> 'sub')
  on conflict on constraint api_denials_one_row_per_kind_and_minute
  do update set denials = d.denials + 1, last_denied_at = clock_timestamp();
  perform set_config('response.status', '403', true);
  return json_build_object('code', 'FORBIDDEN', 'message', 'a valid cron secret is required',
                           'details', null, 'hint', 'Send it in the x-cron-secret header.');
end
$$;

