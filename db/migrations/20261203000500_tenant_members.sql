-- migrate:up

-- Who belongs to which tenant, for issuers of tokens that ask the database for the claims
-- (Supabase Auth's custom access token hook: kpi.supabase_access_token_hook in
-- db/definitions/02_tenants.sql). Where another service mints the tokens, this table may stay empty.
create table kpi.tenant_members (
  tenant_id uuid not null references kpi.tenants (id) on delete cascade,
  user_id uuid not null,
  role text not null default 'member' constraint tenant_members_role check (role in ('member', 'kpi_admin')),
  created_at timestamptz not null default now(),
  primary key (tenant_id, user_id)
);
comment on table kpi.tenant_members is
  'Which users (the token''s sub) belong to which tenant, and as what: member, or kpi_admin (defines custom KPIs). Read when a token is issued.';
-- The hook looks a user up at every sign-in and refresh.
create index tenant_members_by_user on kpi.tenant_members (user_id);
alter table kpi.tenant_members enable row level security;
insert into kpi.table_distribution (table_name, placement, distribution_column, colocate_with, why)
values ('tenant_members', 'distributed', 'tenant_id', 'tenants', 'tenant data; looked up by user when a token is issued (every shard, by index)');

-- migrate:down
delete from kpi.table_distribution where table_name = 'tenant_members';
drop table kpi.tenant_members;
