package store

// PutBlob stores data at path, as Put does, and returns the hash of its
// blob: once the transaction has committed, ReadBlob reads the content back
// by that hash without walking the trees on the path (callers that index
// what they store, such as the mailstore, keep it beside their own record).
func (tx *Tx) PutBlob(path string, data []byte) (Hash, error) {
	if err := tx.Put(path, data); err != nil {
		return Hash{}, err
	}
	return tx.changes[path].hash, nil
}
