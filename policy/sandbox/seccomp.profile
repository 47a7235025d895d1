# seccomp profile of the Claude CLI child (hotplexd.conf "seccomp").
# Syntax: policy/sandbox/seccomp.c.  Everything not listed is allowed: the CLI
# (a Bun binary) and the tools it runs (shells, git, compilers) need most
# of the system.  What is listed gives access to the kernel's attack
# surface or ways out of the sandbox and is never needed by a coding agent.
# Denials are logged by the kernel (seccomp actions other than allow).

default allow

# Looking into or steering other processes.
ptrace			errno:EPERM
process_vm_readv	errno:EPERM
process_vm_writev	errno:EPERM
pidfd_getfd		errno:EPERM

# Mounts and namespaces: no way to rearrange the filesystem under Landlock.
mount			errno:EPERM
umount2			errno:EPERM
pivot_root		errno:EPERM
chroot			errno:EPERM
fsopen			errno:EPERM
fsconfig		errno:EPERM
fsmount			errno:EPERM
fspick			errno:EPERM
move_mount		errno:EPERM
open_tree		errno:EPERM
mount_setattr		errno:EPERM
unshare			errno:EPERM
setns			errno:EPERM
# clone3 passes its flags in memory, which seccomp cannot read: make libc
# fall back to clone, whose flags we can inspect.
clone3			errno:ENOSYS
clone			errno:EPERM	arg0&CLONE_NEWNS==CLONE_NEWNS
clone			errno:EPERM	arg0&CLONE_NEWCGROUP==CLONE_NEWCGROUP
clone			errno:EPERM	arg0&CLONE_NEWUTS==CLONE_NEWUTS
clone			errno:EPERM	arg0&CLONE_NEWIPC==CLONE_NEWIPC
clone			errno:EPERM	arg0&CLONE_NEWUSER==CLONE_NEWUSER
clone			errno:EPERM	arg0&CLONE_NEWPID==CLONE_NEWPID
clone			errno:EPERM	arg0&CLONE_NEWNET==CLONE_NEWNET

# The kernel itself.
init_module		errno:EPERM
finit_module		errno:EPERM
delete_module		errno:EPERM
kexec_load		errno:EPERM
kexec_file_load		errno:EPERM
bpf			errno:EPERM
perf_event_open		errno:EPERM
userfaultfd		errno:EPERM
keyctl			errno:EPERM
add_key			errno:EPERM
request_key		errno:EPERM
open_by_handle_at	errno:EPERM
reboot			errno:EPERM
swapon			errno:EPERM
swapoff			errno:EPERM
acct			errno:EPERM
settimeofday		errno:EPERM
clock_settime		errno:EPERM
clock_adjtime		errno:EPERM
syslog			errno:EPERM
iopl			errno:EPERM
ioperm			errno:EPERM
quotactl		errno:EPERM
# io_uring bypasses seccomp for the operations it runs; callers fall back.
io_uring_setup		errno:ENOSYS
io_uring_enter		errno:ENOSYS
io_uring_register	errno:ENOSYS

# Raw network access.
socket			errno:EPERM	arg0==AF_PACKET
socket			errno:EPERM	arg1&SOCK_TYPE_MASK==SOCK_RAW
socket			errno:EPERM	arg1&SOCK_TYPE_MASK==SOCK_PACKET

# Typing into a terminal that is not ours.  The kernel reads the request
# as 32 bits: compare only those.
ioctl			errno:EPERM	arg1&U32==TIOCSTI
ioctl			errno:EPERM	arg1&U32==TIOCLINUX
