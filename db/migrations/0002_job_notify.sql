-- A job that ends announces it: GET /v1/jobs/{id}?wait=N listens instead of polling.
CREATE FUNCTION notify_job_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_done', NEW.id::text);
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobs_notify_done
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION notify_job_done();
