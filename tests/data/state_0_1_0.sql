BEGIN TRANSACTION;
CREATE TABLE api_keys (
	id INTEGER NOT NULL, 
	name VARCHAR(200), 
	role VARCHAR(20) NOT NULL, 
	plant_id VARCHAR(200), 
	key_hash VARCHAR(64) NOT NULL, 
	prefix VARCHAR(16) NOT NULL, 
	created_at DATETIME NOT NULL, 
	revoked_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (key_hash)
);
INSERT INTO "api_keys" VALUES(1,'ops','admin',NULL,'3a94f5276ed88b3cdae8ddf57b7d49b13b240a08e02c1b70240df9aa4e0ee4b1','mw_8jmZu1','2026-12-06 20:27:58.463073',NULL);
INSERT INTO "api_keys" VALUES(2,'plant-a','ingest','plant-a','c4d16dcbae72a36c4d4c779741a9ed0ed58ba565c4e463dbd56a79ac56ac41de','mw_ajNd45','2026-12-06 20:27:58.470878',NULL);
CREATE TABLE audit_head (
	id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "audit_head" VALUES(1,4,'b37c5f0f5b138f599c8cfdeed20392892194440c5b32d9ed433fd6de52d0990a');
CREATE TABLE audit_log (
	seq INTEGER NOT NULL, 
	at VARCHAR(40) NOT NULL, 
	actor VARCHAR(300) NOT NULL, 
	action VARCHAR(100) NOT NULL, 
	subject VARCHAR(300) NOT NULL, 
	reason TEXT NOT NULL, 
	evidence TEXT NOT NULL, 
	prev_hash VARCHAR(64) NOT NULL, 
	hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (seq)
);
INSERT INTO "audit_log" VALUES(1,'2026-12-06T20:27:58.473834Z','cli:test','registry.add','v1','','{"endpoint":"http://127.0.0.1:9101","status":"stable"}','0000000000000000000000000000000000000000000000000000000000000000','fdbf33ce47ccc82aa00209ed1ce3dd44bf3ae79e83218bf08648e5aa1b171bf8');
INSERT INTO "audit_log" VALUES(2,'2026-12-06T20:27:58.506772Z','cli:test','routes.set','routes','v1 registered as stable','{"canary":null,"canary_plants":[],"canary_weight":0.0,"note":"v1 registered as stable","route_version":1,"shadow":null,"shadow_sample":0.0,"stable":{"url":"http://127.0.0.1:9101","version":"v1"}}','fdbf33ce47ccc82aa00209ed1ce3dd44bf3ae79e83218bf08648e5aa1b171bf8','5a6de6f832f1d3fa536e7ac179be142ac845bd9a703ea5c7ce5b36f61c8a902c');
INSERT INTO "audit_log" VALUES(3,'2026-12-06T20:27:58.510435Z','cli:test','registry.add','v2','','{"endpoint":"http://127.0.0.1:9102","status":"staging"}','5a6de6f832f1d3fa536e7ac179be142ac845bd9a703ea5c7ce5b36f61c8a902c','c78ac0b7f89ecedd38b116477f8d705be6bdbd6e9edfae5783c623428d6210c9');
INSERT INTO "audit_log" VALUES(4,'2025-03-03T09:30:00.000000Z','cli:test','note','v2','seeded','{"n":1}','c78ac0b7f89ecedd38b116477f8d705be6bdbd6e9edfae5783c623428d6210c9','b37c5f0f5b138f599c8cfdeed20392892194440c5b32d9ed433fd6de52d0990a');
CREATE TABLE drift_results (
	id INTEGER NOT NULL, 
	kind VARCHAR(20) NOT NULL, 
	signal VARCHAR(100) NOT NULL, 
	scope VARCHAR(200) NOT NULL, 
	model_version VARCHAR(200) NOT NULL, 
	window_start VARCHAR(40) NOT NULL, 
	window_end VARCHAR(40) NOT NULL, 
	baseline VARCHAR(300) NOT NULL, 
	method VARCHAR(100) NOT NULL, 
	parent_method VARCHAR(100), 
	run_at VARCHAR(40) NOT NULL, 
	statistic FLOAT, 
	p_value FLOAT, 
	threshold FLOAT, 
	alpha FLOAT, 
	status VARCHAR(30) NOT NULL, 
	n_baseline INTEGER, 
	n_current INTEGER, 
	baseline_detail TEXT, 
	topics TEXT, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_drift_result UNIQUE (kind, signal, scope, model_version, window_start, window_end, baseline, method)
);
CREATE TABLE eval_comparisons (
	id INTEGER NOT NULL, 
	run_a INTEGER NOT NULL, 
	run_b INTEGER NOT NULL, 
	gate_name VARCHAR(200) NOT NULL, 
	passed BOOLEAN NOT NULL, 
	result JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(run_a) REFERENCES eval_runs (id) ON DELETE CASCADE, 
	FOREIGN KEY(run_b) REFERENCES eval_runs (id) ON DELETE CASCADE
);
CREATE TABLE eval_generations (
	"key" VARCHAR(64) NOT NULL, 
	model VARCHAR(200) NOT NULL, 
	request JSON NOT NULL, 
	output TEXT NOT NULL, 
	latency_ms FLOAT NOT NULL, 
	usage JSON, 
	endpoint VARCHAR(2000) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY ("key")
);
CREATE TABLE eval_items (
	run_id INTEGER NOT NULL, 
	item_id VARCHAR(200) NOT NULL, 
	position INTEGER NOT NULL, 
	prompt TEXT NOT NULL, 
	reference TEXT, 
	output TEXT, 
	error TEXT, 
	metrics JSON NOT NULL, 
	violations JSON NOT NULL, 
	tags JSON NOT NULL, 
	details JSON NOT NULL, 
	latency_ms FLOAT, 
	attempts INTEGER NOT NULL, 
	cached BOOLEAN NOT NULL, 
	PRIMARY KEY (run_id, item_id), 
	FOREIGN KEY(run_id) REFERENCES eval_runs (id) ON DELETE CASCADE
);
CREATE TABLE eval_runs (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	model VARCHAR(200) NOT NULL, 
	endpoint VARCHAR(2000) NOT NULL, 
	golden_name VARCHAR(200) NOT NULL, 
	golden_version INTEGER NOT NULL, 
	golden_hash VARCHAR(64) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	params JSON NOT NULL, 
	signatures JSON NOT NULL, 
	corpus JSON NOT NULL, 
	embedder VARCHAR(200), 
	n_items INTEGER NOT NULL, 
	n_answered INTEGER NOT NULL, 
	n_failed INTEGER NOT NULL, 
	n_cached INTEGER NOT NULL, 
	n_requests INTEGER NOT NULL, 
	duration_s FLOAT NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
INSERT INTO "eval_runs" VALUES(1,'v1-golden','v1','http://127.0.0.1:9101/v1','golden',1,'abababababababababababababababababababababababababababababababab','done','{"temperature": 0.0}','{"bleu": "nrefs:1"}','{"bleu": 41.5}','hashing',3,3,0,0,3,1.25,'2025-03-03 09:30:00.000000');
CREATE TABLE gateway_routes (
	version INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	created_by VARCHAR(200), 
	stable_version VARCHAR(200) NOT NULL, 
	stable_url VARCHAR(2000) NOT NULL, 
	canary_version VARCHAR(200), 
	canary_url VARCHAR(2000), 
	canary_weight FLOAT NOT NULL, 
	canary_plants VARCHAR(8000) NOT NULL, 
	shadow_version VARCHAR(200), 
	shadow_url VARCHAR(2000), 
	shadow_sample FLOAT NOT NULL, 
	note VARCHAR(2000), 
	PRIMARY KEY (version)
);
INSERT INTO "gateway_routes" VALUES(1,'2026-12-06 20:27:58.498056','cli:test','v1','http://127.0.0.1:9101',NULL,NULL,0.0,'[]',NULL,NULL,0.0,'v1 registered as stable');
CREATE TABLE incident_steps (
	incident_id VARCHAR(100) NOT NULL, 
	step VARCHAR(50) NOT NULL, 
	done_at DATETIME NOT NULL, 
	detail JSON NOT NULL, 
	CONSTRAINT pk_incident_steps PRIMARY KEY (incident_id, step)
);
INSERT INTO "incident_steps" VALUES('INC-20250303-093000-abcd','reroute','2025-03-03 09:30:00.000000','{"route_version": 3}');
CREATE TABLE incidents (
	id VARCHAR(100) NOT NULL, 
	"key" VARCHAR(300) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	severity VARCHAR(20) NOT NULL, 
	version VARCHAR(200) NOT NULL, 
	stable_version VARCHAR(200), 
	rollout_id INTEGER, 
	rule_id VARCHAR(200) NOT NULL, 
	"trigger" JSON NOT NULL, 
	detected_at DATETIME NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	actor VARCHAR(300) NOT NULL, 
	rca_dir VARCHAR(2000), 
	note TEXT, 
	PRIMARY KEY (id)
);
INSERT INTO "incidents" VALUES('INC-20250303-093000-abcd','rollout:1','closed','high','v2','v1',1,'safety_rate','{"value": 0.02}','2025-03-03 09:30:00.000000','2025-03-03 09:30:00.000000','2025-03-03 09:30:00.000000','sop',NULL,'seeded');
CREATE TABLE model_versions (
	version VARCHAR(200) NOT NULL, 
	endpoint VARCHAR(2000) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	created_at DATETIME NOT NULL, 
	created_by VARCHAR(300) NOT NULL, 
	updated_at DATETIME NOT NULL, 
	quarantined_at DATETIME, 
	quarantine_reason TEXT, 
	notes TEXT, 
	PRIMARY KEY (version)
);
INSERT INTO "model_versions" VALUES('v1','http://127.0.0.1:9101','stable','2026-12-06 20:27:58.473834','cli:test','2026-12-06 20:27:58.473834',NULL,NULL,NULL);
INSERT INTO "model_versions" VALUES('v2','http://127.0.0.1:9102','staging','2026-12-06 20:27:58.510435','cli:test','2026-12-06 20:27:58.510435',NULL,NULL,NULL);
CREATE TABLE notifications (
	id INTEGER NOT NULL, 
	incident_id VARCHAR(100) NOT NULL, 
	channel VARCHAR(20) NOT NULL, 
	target VARCHAR(2000) NOT NULL, 
	payload JSON NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	attempts INTEGER NOT NULL, 
	max_attempts INTEGER NOT NULL, 
	backoff_ms INTEGER NOT NULL, 
	timeout_ms INTEGER NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	last_error TEXT, 
	created_at DATETIME NOT NULL, 
	sent_at DATETIME, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_notification UNIQUE (incident_id, channel, target)
);
INSERT INTO "notifications" VALUES(1,'INC-20250303-093000-abcd','webhook','http://127.0.0.1:9/hook','{"event": "modelwarden.rollback"}','sent',1,5,500,5000,'2025-03-03 09:30:00.000000',NULL,'2025-03-03 09:30:00.000000','2025-03-03 09:30:00.000000');
CREATE TABLE release_requests (
	id INTEGER NOT NULL, 
	version VARCHAR(200) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	requested_at DATETIME NOT NULL, 
	requested_by_key INTEGER NOT NULL, 
	requested_by VARCHAR(300) NOT NULL, 
	reason TEXT NOT NULL, 
	decided_at DATETIME, 
	decided_by_key INTEGER, 
	decided_by VARCHAR(300), 
	evidence JSON, 
	PRIMARY KEY (id)
);
CREATE TABLE review_assignments (
	item_id VARCHAR(32) NOT NULL, 
	reviewer VARCHAR(100) NOT NULL, 
	assigned_at DATETIME NOT NULL, 
	PRIMARY KEY (item_id, reviewer), 
	FOREIGN KEY(item_id) REFERENCES review_items (id) ON DELETE CASCADE
);
CREATE TABLE review_items (
	id VARCHAR(32) NOT NULL, 
	queue VARCHAR(200) NOT NULL, 
	kind VARCHAR(10) NOT NULL, 
	position INTEGER NOT NULL, 
	source VARCHAR(10) NOT NULL, 
	source_ref VARCHAR(400) NOT NULL, 
	request_id VARCHAR(200), 
	run_id INTEGER, 
	model_version VARCHAR(200), 
	plant_id VARCHAR(200), 
	prompt TEXT NOT NULL, 
	response TEXT NOT NULL, 
	response_b TEXT, 
	reference TEXT, 
	pair JSON, 
	gold JSON, 
	meta JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_review_items_source UNIQUE (queue, kind, source_ref), 
	FOREIGN KEY(queue) REFERENCES review_queues (name) ON DELETE CASCADE
);
INSERT INTO "review_items" VALUES('it1','default','single',0,'logs','req-1','req-1',NULL,'v1','plant-a','How do I reset the press?','Press the red button.',NULL,NULL,NULL,NULL,'{"route": "stable"}','2025-03-03 09:30:00.000000');
CREATE TABLE review_queues (
	name VARCHAR(200) NOT NULL, 
	rubric JSON NOT NULL, 
	reviewers_per_item INTEGER NOT NULL, 
	lease_minutes FLOAT NOT NULL, 
	params JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "review_queues" VALUES('default','{"name": "default"}',2,60.0,'{}','2025-03-03 09:30:00.000000');
CREATE TABLE reviews (
	id VARCHAR(32) NOT NULL, 
	item_id VARCHAR(32) NOT NULL, 
	queue VARCHAR(200) NOT NULL, 
	reviewer VARCHAR(100) NOT NULL, 
	answers JSON NOT NULL, 
	decoded JSON NOT NULL, 
	comment TEXT, 
	seconds FLOAT, 
	origin VARCHAR(10) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_reviews_item_reviewer UNIQUE (item_id, reviewer), 
	FOREIGN KEY(item_id) REFERENCES review_items (id) ON DELETE CASCADE
);
CREATE TABLE rollouts (
	id INTEGER NOT NULL, 
	version VARCHAR(200) NOT NULL, 
	canary_url VARCHAR(2000) NOT NULL, 
	stable_version VARCHAR(200) NOT NULL, 
	stable_url VARCHAR(2000) NOT NULL, 
	"plan" JSON NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	paused_from VARCHAR(20), 
	step INTEGER NOT NULL, 
	step_started_at DATETIME NOT NULL, 
	hold_until DATETIME NOT NULL, 
	looks INTEGER NOT NULL, 
	route_version INTEGER, 
	engine_state JSON NOT NULL, 
	last_tick_at DATETIME, 
	last_verdict JSON, 
	incident_id VARCHAR(100), 
	created_at DATETIME NOT NULL, 
	created_by VARCHAR(300) NOT NULL, 
	updated_at DATETIME NOT NULL, 
	ended_at DATETIME, 
	end_reason TEXT, 
	PRIMARY KEY (id)
);
INSERT INTO "rollouts" VALUES(1,'v2','http://127.0.0.1:9102','v1','http://127.0.0.1:9101','{"steps": [5, 25, 100]}','rolled_back',NULL,1,'2025-03-03 09:30:00.000000','2025-03-03 09:30:00.000000',3,2,'{}',NULL,NULL,'INC-20250303-093000-abcd','2025-03-03 09:30:00.000000','cli:test','2025-03-03 09:30:00.000000','2025-03-03 09:30:00.000000','rule fired');
CREATE TABLE version_evidence (
	id INTEGER NOT NULL, 
	version VARCHAR(200) NOT NULL, 
	kind VARCHAR(100) NOT NULL, 
	created_at DATETIME NOT NULL, 
	actor VARCHAR(300) NOT NULL, 
	data JSON NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_audit_log_action ON audit_log (action);
CREATE INDEX ix_audit_log_subject ON audit_log (subject);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE INDEX ix_model_versions_status ON model_versions (status);
CREATE INDEX ix_release_requests_version ON release_requests (version);
CREATE INDEX ix_version_evidence_version ON version_evidence (version);
CREATE INDEX ix_eval_runs_model ON eval_runs (model);
CREATE INDEX ix_incidents_version ON incidents (version);
CREATE INDEX ix_incidents_key ON incidents ("key");
CREATE INDEX ix_incidents_status ON incidents (status);
CREATE INDEX ix_notifications_status ON notifications (status);
CREATE INDEX ix_notifications_incident_id ON notifications (incident_id);
CREATE INDEX ix_rollouts_version ON rollouts (version);
CREATE INDEX ix_rollouts_status ON rollouts (status);
CREATE INDEX ix_drift_results_scope ON drift_results (scope);
CREATE INDEX ix_drift_results_window_start ON drift_results (window_start);
CREATE INDEX ix_eval_comparisons_b ON eval_comparisons (run_b, id);
CREATE INDEX ix_review_items_queue_position ON review_items (queue, position);
CREATE INDEX ix_reviews_queue ON reviews (queue);
COMMIT;
