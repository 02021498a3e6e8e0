package state

import "errors"

var (
	ErrNotFound     = errors.New("object not found")
	ErrExists       = errors.New("object already exists")
	ErrConflict     = errors.New("update out of sequence: the object changed since it was read")
	ErrNameConflict = errors.New("name conflicts with an existing object")
	ErrInvalid      = errors.New("invalid store action")
)
