// Sekisho default YARA pack: the EICAR anti-virus test file.
// Externals available to every rule: filename, filepath, extension, filetype, owner.

rule EICAR_Test_File
{
    meta:
        description = "EICAR anti-virus test file"
        author = "Sekisho"
        reference = "https://www.eicar.org/download-anti-malware-testfile/"
    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    condition:
        $eicar at 0 and filesize <= 128
}
