#!/bin/sh
# systemd-vm.sh's ExecStartPost=+ drop-in: what sysfs and systemd say at the moment systemd takes
# the unit's start as done (for Type=notify: after READY=1), for the scenarios to print.
# shellcheck source=/dev/null
. /e2e/env.sh
mkdir -p /run/sdvm
d=$(readlink "/sys/bus/pci/devices/$NIC/driver" 2>/dev/null) || d=-
echo "STARTDONE ready=$([ -e /run/intel-gpu-driver/ready ] && echo 1 || echo 0) driver=${d##*/}" \
  "state=$(systemctl show -p ActiveState --value intel-gpu-driver.service)" \
  "status=$(systemctl show -p StatusText --value intel-gpu-driver.service)" >>/run/sdvm/start-done
