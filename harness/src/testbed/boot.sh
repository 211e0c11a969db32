#!/bin/sh
# A "VM" of hadrill's SSH test bed: an SSH server and runit, the node's service under runit as
# service `main`, a user `drill` allowed by sudo exactly the commands hadrill's faults run.
set -e
id drill >/dev/null 2>&1 || useradd -m -s /bin/sh drill
# Key login only; the account is not locked, so sshd lets the key in.
usermod -p '*' drill
install -d -m 700 -o drill -g drill /home/drill/.ssh
install -m 600 -o drill -g drill /etc/hadrill/vm/authorized_keys /home/drill/.ssh/authorized_keys
install -m 440 /etc/hadrill/vm/sudoers /etc/sudoers.d/drill
install -m 600 /etc/hadrill/vm/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key
mkdir -p /run/sshd /etc/service/main /var/log/hadrill
install -m 755 /etc/hadrill/vm/run /etc/service/main/run
install -m 755 /etc/hadrill/vm/finish /etc/service/main/finish
/usr/sbin/sshd -h /etc/ssh/ssh_host_ed25519_key -o PasswordAuthentication=no \
    -o KbdInteractiveAuthentication=no -E /var/log/hadrill/sshd.log
exec runsvdir -P /etc/service
