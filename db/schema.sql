\restrict kpi_history

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: api; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA api;


--
-- Name: SCHEMA api; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA api IS 'The HTTP API of kpi-history, served by PostgREST. Views and functions only.';


--
-- Name: pg_cron; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA public;


--
-- Name: EXTENSION pg_cron; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON EXTENSION pg_cron IS 'Job scheduler for PostgreSQL';


--
-- Name: kpi; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA kpi;


--
-- Name: SCHEMA kpi; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA kpi IS 'Private: KPI source tables, history, run log and the aggregation. Not exposed over HTTP.';


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: avi_reports; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.avi_reports (
    id bigint NOT NULL,
    tenant_id uuid NOT NULL,
    week_start date NOT NULL,
    aiv_pct numeric(5,2) NOT NULL,
    ati_pct numeric(5,2) NOT NULL,
    crs_pct numeric(5,2) NOT NULL,
    elasticity_usd_per_point numeric(10,2) NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT avi_reports_aiv_pct_range CHECK (((aiv_pct >= (0)::numeric) AND (aiv_pct <= (100)::numeric))),
    CONSTRAINT avi_reports_ati_pct_range CHECK (((ati_pct >= (0)::numeric) AND (ati_pct <= (100)::numeric))),
    CONSTRAINT avi_reports_crs_pct_range CHECK (((crs_pct >= (0)::numeric) AND (crs_pct <= (100)::numeric))),
    CONSTRAINT avi_reports_week_start_is_monday CHECK ((EXTRACT(isodow FROM week_start) = (1)::numeric))
);


--
-- Name: TABLE avi_reports; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.avi_reports IS 'One AVI report per tenant per week; week_start is the Monday the week begins.';


--
-- Name: COLUMN avi_reports.elasticity_usd_per_point; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.avi_reports.elasticity_usd_per_point IS 'Revenue change in US dollars per percentage point of AIV.';


--
-- Name: avi_reports_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.avi_reports ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.avi_reports_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: clarity_reports; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.clarity_reports (
    id bigint NOT NULL,
    tenant_id uuid NOT NULL,
    measured_at timestamp with time zone NOT NULL,
    metrics jsonb NOT NULL,
    CONSTRAINT clarity_reports_metrics_is_object CHECK ((jsonb_typeof(metrics) = 'object'::text))
);


--
-- Name: TABLE clarity_reports; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.clarity_reports IS 'Clarity measurements; metrics->''hrp'' is the hallucination-risk probability (0 to 1).';


--
-- Name: clarity_reports_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.clarity_reports ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.clarity_reports_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: kpi_history; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.kpi_history (
    id bigint NOT NULL,
    tenant_id uuid NOT NULL,
    as_of date NOT NULL,
    aiv_pct numeric(5,2) NOT NULL,
    ati_pct numeric(5,2) NOT NULL,
    crs_pct numeric(5,2) NOT NULL,
    elasticity_usd_per_point numeric(10,2) NOT NULL,
    vli_integrity_pct numeric(5,2) NOT NULL,
    vli_is_fallback boolean NOT NULL,
    hrp_pct numeric(5,2),
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT kpi_history_aiv_pct_range CHECK (((aiv_pct >= (0)::numeric) AND (aiv_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_as_of_is_monday CHECK ((EXTRACT(isodow FROM as_of) = (1)::numeric)),
    CONSTRAINT kpi_history_ati_pct_range CHECK (((ati_pct >= (0)::numeric) AND (ati_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_crs_pct_range CHECK (((crs_pct >= (0)::numeric) AND (crs_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_hrp_pct_range CHECK (((hrp_pct >= (0)::numeric) AND (hrp_pct <= (100)::numeric))),
    CONSTRAINT kpi_history_vli_integrity_pct_range CHECK (((vli_integrity_pct >= (0)::numeric) AND (vli_integrity_pct <= (100)::numeric)))
);


--
-- Name: TABLE kpi_history; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.kpi_history IS 'Weekly KPIs per tenant, written only by the aggregation (kpi.fill_* functions).';


--
-- Name: COLUMN kpi_history.as_of; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_history.as_of IS 'The Monday of the AVI week the row describes.';


--
-- Name: COLUMN kpi_history.vli_is_fallback; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_history.vli_is_fallback IS 'True when no VLI audit existed before the end of the week and vli_integrity_pct is the 100 fallback.';


--
-- Name: COLUMN kpi_history.hrp_pct; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON COLUMN kpi.kpi_history.hrp_pct IS 'Hallucination-risk probability in percent (100 x clarity metrics->''hrp''); NULL when missing or invalid.';


--
-- Name: kpi_history_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.kpi_history ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.kpi_history_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: tenants; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.tenants (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    slug text NOT NULL,
    name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tenants_name_not_blank CHECK ((btrim(name) <> ''::text)),
    CONSTRAINT tenants_slug_format CHECK ((slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'::text))
);


--
-- Name: TABLE tenants; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.tenants IS 'Customers of the SaaS. The slug is URL- and filename-safe (used in CSV file names).';


--
-- Name: vli_audits; Type: TABLE; Schema: kpi; Owner: -
--

CREATE TABLE kpi.vli_audits (
    id bigint NOT NULL,
    tenant_id uuid NOT NULL,
    audited_at timestamp with time zone NOT NULL,
    integrity_pct numeric(5,2) NOT NULL,
    CONSTRAINT vli_audits_integrity_pct_range CHECK (((integrity_pct >= (0)::numeric) AND (integrity_pct <= (100)::numeric)))
);


--
-- Name: TABLE vli_audits; Type: COMMENT; Schema: kpi; Owner: -
--

COMMENT ON TABLE kpi.vli_audits IS 'VLI audits; the latest one before the end of a week gives that week''s integrity.';


--
-- Name: vli_audits_id_seq; Type: SEQUENCE; Schema: kpi; Owner: -
--

ALTER TABLE kpi.vli_audits ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME kpi.vli_audits_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version character varying(128) NOT NULL
);


--
-- Name: avi_reports avi_reports_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.avi_reports
    ADD CONSTRAINT avi_reports_pkey PRIMARY KEY (id);


--
-- Name: avi_reports avi_reports_tenant_week_key; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.avi_reports
    ADD CONSTRAINT avi_reports_tenant_week_key UNIQUE (tenant_id, week_start);


--
-- Name: clarity_reports clarity_reports_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.clarity_reports
    ADD CONSTRAINT clarity_reports_pkey PRIMARY KEY (id);


--
-- Name: kpi_history kpi_history_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_history
    ADD CONSTRAINT kpi_history_pkey PRIMARY KEY (id);


--
-- Name: kpi_history kpi_history_tenant_as_of_key; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_history
    ADD CONSTRAINT kpi_history_tenant_as_of_key UNIQUE (tenant_id, as_of);


--
-- Name: tenants tenants_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenants
    ADD CONSTRAINT tenants_pkey PRIMARY KEY (id);


--
-- Name: tenants tenants_slug_key; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.tenants
    ADD CONSTRAINT tenants_slug_key UNIQUE (slug);


--
-- Name: vli_audits vli_audits_pkey; Type: CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.vli_audits
    ADD CONSTRAINT vli_audits_pkey PRIMARY KEY (id);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: clarity_reports_tenant_latest_idx; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX clarity_reports_tenant_latest_idx ON kpi.clarity_reports USING btree (tenant_id, measured_at DESC);


--
-- Name: vli_audits_tenant_latest_idx; Type: INDEX; Schema: kpi; Owner: -
--

CREATE INDEX vli_audits_tenant_latest_idx ON kpi.vli_audits USING btree (tenant_id, audited_at DESC) INCLUDE (integrity_pct);


--
-- Name: avi_reports avi_reports_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.avi_reports
    ADD CONSTRAINT avi_reports_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: clarity_reports clarity_reports_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.clarity_reports
    ADD CONSTRAINT clarity_reports_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: kpi_history kpi_history_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.kpi_history
    ADD CONSTRAINT kpi_history_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- Name: vli_audits vli_audits_tenant_id_fkey; Type: FK CONSTRAINT; Schema: kpi; Owner: -
--

ALTER TABLE ONLY kpi.vli_audits
    ADD CONSTRAINT vli_audits_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES kpi.tenants(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--

\unrestrict kpi_history


--
-- Dbmate schema migrations
--

INSERT INTO public.schema_migrations (version) VALUES
    ('20261130000100'),
    ('20261130000200');
