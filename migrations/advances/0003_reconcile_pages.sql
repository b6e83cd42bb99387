-- Reconciliation pages through the open advances by id (keyset paging, so a resumed run starts where it
-- stopped): this index holds only the open ones, however many have closed.
CREATE INDEX advances_open_by_id ON advances (id) WHERE status IN ('granting', 'active');
