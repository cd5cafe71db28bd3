-- migrate:up

-- ============================================================================================
-- The cron secret: only salted SHA-256 hashes are stored, in a table no API role can read
-- ============================================================================================
-- Several secrets may be active at once: that is how rotation works (add the new one, move the
-- callers over, retire the old one). Installed from the environment by `npm run cron-secret`.
create table kpi.cron_secrets (
  id bigint generated always as identity primary key,
  salt bytea not null,
  secret_sha256 bytea not null,
  created_at timestamptz not null default clock_timestamp(),
  retired_at timestamptz
);
comment on table kpi.cron_secrets is 'Hashes of the secrets that authorize POST /rpc/kpi_history_cron; rows with retired_at NULL are active.';
alter table kpi.cron_secrets enable row level security;
alter table kpi.cron_secrets force row level security;
do $$ begin
  execute format('create policy "cron_secrets are maintained by their owner" on kpi.cron_secrets for all to %I using (true) with check (true)', current_user);
end $$;

create function kpi.cron_secret_hash(salt bytea, secret text) returns bytea
language sql immutable parallel safe
return sha256(salt || convert_to(secret, 'UTF8'));

-- Adds a secret (idempotent: an active identical secret is left as is). Shorter than 32
-- characters is refused: a cron secret guards a write endpoint on the open internet.
create function kpi.add_cron_secret(secret text) returns jsonb
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

-- Retires every active secret but the newest `keep`.
create function kpi.retire_cron_secrets(keep integer default 1) returns jsonb
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

comment on function kpi.add_cron_secret(text) is 'Adds an active cron secret (32+ characters), keeping the others: the first step of a rotation.';
comment on function kpi.retire_cron_secrets(integer) is 'Retires all active cron secrets but the newest `keep` (default 1): the last step of a rotation.';

-- ============================================================================================
-- Denied calls: when, which endpoint, why. Never the secret that was tried.
-- ============================================================================================
create table kpi.api_denials (
  id bigint generated always as identity primary key,
  denied_at timestamptz not null default clock_timestamp(),
  endpoint text not null,
  reason text not null,
  db_role text not null default current_user,
  jwt_sub text
);
comment on table kpi.api_denials is 'Audit of refused API calls (missing or wrong cron secret…). Holds no secret.';
create index api_denials_denied_at_idx on kpi.api_denials (denied_at desc);
alter table kpi.api_denials enable row level security;
alter table kpi.api_denials force row level security;
do $$ begin
  execute format('create policy "api_denials are maintained by their owner" on kpi.api_denials for all to %I using (true) with check (true)', current_user);
end $$;

-- migrate:down
drop table kpi.api_denials;
drop function kpi.retire_cron_secrets(integer);
drop function kpi.add_cron_secret(text);
drop function kpi.cron_secret_hash(bytea, text);
drop table kpi.cron_secrets;
