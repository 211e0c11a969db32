#!/bin/sh
# One member of a three-node etcd cluster; its name is the first argument.
exec etcd --name "$1" --data-dir "/tmp/$1" \
    --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls "http://$1:2379" \
    --listen-peer-urls http://0.0.0.0:2380 --initial-advertise-peer-urls "http://$1:2380" \
    --initial-cluster etcd1=http://etcd1:2380,etcd2=http://etcd2:2380,etcd3=http://etcd3:2380 \
    --initial-cluster-state new --initial-cluster-token hadrill
